"""The Online Boutique's data types and its money arithmetic.

Every type that crosses a component boundary is a frozen attrs class deriving from
``weaver.AutoMarshal``, so pyweaver serialises it without any schema. The gRPC baseline of
the benchmark converts these same classes to and from protobuf messages at its edges.

Money follows the original store exactly (specification §2.1): an amount is whole
``units`` plus ``nanos`` (10^-9 units) with the same sign, sums carry with Go's
truncate-toward-zero division, and displayed cents are truncated, never rounded.
"""

from __future__ import annotations

import attrs

import pyweaver as weaver

NANOS_PER_UNIT = 1_000_000_000
NANOS_MAX = NANOS_PER_UNIT - 1


@attrs.frozen
class Money(weaver.AutoMarshal):
    currency_code: str
    units: int
    nanos: int


@attrs.frozen
class CartItem(weaver.AutoMarshal):
    product_id: str
    quantity: int


@attrs.frozen
class Address(weaver.AutoMarshal):
    street_address: str = ""
    city: str = ""
    state: str = ""
    country: str = ""
    zip_code: int = 0


@attrs.frozen
class CreditCardInfo(weaver.AutoMarshal):
    number: str
    cvv: int
    expiration_year: int
    expiration_month: int


@attrs.frozen
class Product(weaver.AutoMarshal):
    id: str
    name: str
    description: str
    picture: str
    price_usd: Money
    categories: list[str]


@attrs.frozen
class Ad(weaver.AutoMarshal):
    redirect_url: str
    text: str


@attrs.frozen
class OrderItem(weaver.AutoMarshal):
    item: CartItem
    cost: Money


@attrs.frozen
class Order(weaver.AutoMarshal):
    order_id: str
    shipping_tracking_id: str
    shipping_cost: Money
    shipping_address: Address
    items: list[OrderItem]


@attrs.frozen
class PlaceOrderRequest(weaver.AutoMarshal):
    user_id: str
    user_currency: str
    address: Address
    email: str
    credit_card: CreditCardInfo


class BoutiqueError(weaver.AutoMarshal, Exception):
    """A business error of some service (not found, invalid card, ...); it crosses the
    wire with its type and message. ``code`` is the HTTP status the frontend shows."""

    message: str
    code: int = 500

    def __str__(self) -> str:
        return self.message


class NotFoundError(BoutiqueError):
    pass


class PaymentError(BoutiqueError):
    pass


class CheckoutError(BoutiqueError):
    pass


class CurrencyError(BoutiqueError):
    pass


# ------------------------------------------------------------------ money arithmetic


def _div_trunc(a: int, b: int) -> int:
    """Go's integer division: the quotient truncated toward zero."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b > 0) else -quotient


def _mod_trunc(a: int, b: int) -> int:
    """Go's remainder: same sign as the dividend."""
    return a - b * _div_trunc(a, b)


def is_valid(m: Money) -> bool:
    """nanos in range, and units and nanos do not disagree in sign."""
    if not -NANOS_MAX <= m.nanos <= NANOS_MAX:
        return False
    return (m.units >= 0 and m.nanos >= 0) or (m.units <= 0 and m.nanos <= 0)


def is_zero(m: Money) -> bool:
    return m.units == 0 and m.nanos == 0


def money_sum(left: Money, right: Money) -> Money:
    """``left + right`` with carry; both in the same currency (the result keeps left's)."""
    if not is_valid(left) or not is_valid(right):
        raise ValueError("invalid value")
    if left.currency_code != right.currency_code:
        raise ValueError("mismatching currency codes")
    units = left.units + right.units
    nanos = left.nanos + right.nanos
    if (units == 0 and nanos == 0) or (units > 0 and nanos >= 0) or (units < 0 and nanos <= 0):
        units += _div_trunc(nanos, NANOS_PER_UNIT)
        nanos = _mod_trunc(nanos, NANOS_PER_UNIT)
    elif units > 0:
        units -= 1
        nanos += NANOS_PER_UNIT
    else:
        units += 1
        nanos -= NANOS_PER_UNIT
    return Money(left.currency_code, units, nanos)


def multiply_slow(m: Money, n: int) -> Money:
    """``m`` added to itself ``n - 1`` times (as the original: ``n = 0`` returns ``m``)."""
    total = m
    for _ in range(n - 1):
        total = money_sum(total, m)
    return total


def zero(currency_code: str) -> Money:
    return Money(currency_code, 0, 0)


CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "JPY": "¥", "EUR": "€", "TRY": "₺", "GBP": "£"}


def render_money(m: Money) -> str:
    """``$19.99``: the symbol, the units and the cents, truncated (never rounded)."""
    symbol = CURRENCY_SYMBOLS.get(m.currency_code, "$")
    return f"{symbol}{m.units}.{_div_trunc(m.nanos, 10_000_000):02d}"
