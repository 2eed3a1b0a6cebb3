"""The Online Boutique's business logic, free of any transport.

Each class here is one service's behaviour as the original store (2023, v0.8.0) has it;
``app.py`` wraps each in a pyweaver component and the benchmark's gRPC baseline wraps
the same classes in gRPC servicers, so every arm of the experiment runs the same code.
Services that call others (cart, recommendation, checkout) take those others as the
Protocols of ``boutique.api``: a local object, a pyweaver stub or a gRPC client.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from .api import (
    CartCache,
    CartService,
    CurrencyService,
    EmailService,
    PaymentService,
    ProductCatalogService,
    ShippingService,
)
from .model import (
    Ad,
    Address,
    CartItem,
    CheckoutError,
    CreditCardInfo,
    CurrencyError,
    Money,
    NotFoundError,
    Order,
    OrderItem,
    PaymentError,
    PlaceOrderRequest,
    Product,
    money_sum,
    multiply_slow,
    zero,
)

DATA = Path(__file__).resolve().parent / "data"
Log = Callable[[str], None]


def _no_log(message: str) -> None:
    pass


# ------------------------------------------------------------------ product catalog


def load_products(path: Path = DATA / "products.json") -> list[Product]:
    """The catalog in file order (the home page's order)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        Product(
            id=p["id"],
            name=p["name"],
            description=p["description"],
            picture=p["picture"],
            price_usd=Money(
                p["priceUsd"]["currencyCode"],
                int(p["priceUsd"]["units"]),
                int(p["priceUsd"]["nanos"]),
            ),
            categories=list(p["categories"]),
        )
        for p in data["products"]
    ]


class Catalog:
    def __init__(self, products: list[Product] | None = None) -> None:
        self.products = load_products() if products is None else products
        self.by_id = {p.id: p for p in self.products}

    async def list_products(self) -> list[Product]:
        return list(self.products)

    async def get_product(self, product_id: str) -> Product:
        try:
            return self.by_id[product_id]
        except KeyError:
            raise NotFoundError(f"no product with ID {product_id}", 404) from None

    async def search_products(self, query: str) -> list[Product]:
        q = query.lower()
        return [p for p in self.products if q in p.name.lower() or q in p.description.lower()]


# ------------------------------------------------------------------ currency


def load_rates(path: Path = DATA / "currency_conversion.json") -> dict[str, float]:
    """Units of each currency per euro, in file order."""
    raw: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {code: float(rate) for code, rate in raw.items()}


_FRACTION = 1e9


def _carry(units: float, nanos: float) -> tuple[float, float]:
    # JavaScript semantics: % is fmod (sign of the dividend), Math.floor is floor.
    nanos += math.fmod(units, 1) * _FRACTION
    units = math.floor(units) + math.floor(nanos / _FRACTION)
    nanos = math.fmod(nanos, _FRACTION)
    return units, nanos


def convert_money(amount: Money, to_code: str, rates: dict[str, float]) -> Money:
    """The original currency service's conversion (specification §2.2): IEEE doubles,
    always through EUR, the EUR nanos rounded half up, the result floored."""
    if amount.currency_code not in rates:
        raise CurrencyError(f"unsupported currency: {amount.currency_code}", 400)
    if to_code not in rates:
        raise CurrencyError(f"unsupported currency: {to_code}", 400)
    from_rate, to_rate = rates[amount.currency_code], rates[to_code]
    euro_units, euro_nanos = _carry(amount.units / from_rate, amount.nanos / from_rate)
    euro_nanos = math.floor(euro_nanos + 0.5)  # JavaScript's Math.round
    units, nanos = _carry(euro_units * to_rate, euro_nanos * to_rate)
    return Money(to_code, math.floor(units), math.floor(nanos))


class Currency:
    def __init__(self, rates: dict[str, float] | None = None) -> None:
        self.rates = load_rates() if rates is None else rates

    async def get_supported_currencies(self) -> list[str]:
        return list(self.rates)

    async def convert(self, amount: Money, to_code: str) -> Money:
        return convert_money(amount, to_code, self.rates)


# ------------------------------------------------------------------ shipping

SHIPPING_COST_USD = Money("USD", 8, 990_000_000)


def tracking_id(address: Address, rng: random.Random | None = None) -> str:
    """``QK-44512-223456789``: two letters A-Y, len(salt) and 3 digits, len(salt)//2 and
    7 digits, where salt is "<street>, <city>, <state>"."""
    rng = rng or random.Random()
    salt = f"{address.street_address}, {address.city}, {address.state}"
    letters = "".join(chr(65 + rng.randrange(25)) for _ in range(2))

    def digits(n: int) -> str:
        return "".join(str(rng.randrange(10)) for _ in range(n))

    return f"{letters}-{len(salt)}{digits(3)}-{len(salt) // 2}{digits(7)}"


class Shipping:
    async def get_quote(self, address: Address, items: list[CartItem]) -> Money:
        # 2023: a flat 8.99 USD whatever the address and items, even for an empty cart.
        return SHIPPING_COST_USD

    async def ship_order(self, address: Address, items: list[CartItem]) -> str:
        return tracking_id(address)


# ------------------------------------------------------------------ payment

# (type, prefix pattern, allowed lengths), in the order the validator tries them.
CARD_TYPES: list[tuple[str, re.Pattern[str], range]] = [
    ("amex", re.compile(r"^3[47]"), range(15, 16)),
    ("diners_club_carte_blanche", re.compile(r"^30[0-5]"), range(14, 15)),
    ("diners_club_international", re.compile(r"^36"), range(14, 15)),
    ("jcb", re.compile(r"^35(2[89]|[3-8]\d)"), range(16, 17)),
    ("laser", re.compile(r"^(6304|670[69]|6771)"), range(16, 20)),
    ("visa_electron", re.compile(r"^(4026|417500|4508|4844|4913|4917)"), range(16, 17)),
    ("visa", re.compile(r"^4"), range(16, 17)),
    ("mastercard", re.compile(r"^5[1-5]"), range(16, 17)),
    ("maestro", re.compile(r"^(5018|5020|5038|6304|6759|676[1-3])"), range(12, 20)),
    (
        "discover",
        re.compile(r"^(6011|622(12[6-9]|1[3-9]\d|[2-8]\d{2}|9[01]\d|92[0-5])|64[4-9]|65)"),
        range(16, 17),
    ),
]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_type(number: str) -> tuple[str | None, bool]:
    """(the card's type or None, whether the number is valid for it: Luhn and length)."""
    number = number.replace(" ", "").replace("-", "")
    for name, pattern, lengths in CARD_TYPES:
        if pattern.match(number):
            valid = number.isdigit() and luhn_ok(number) and len(number) in lengths
            return name, valid
    return None, False


def validate_card(card: CreditCardInfo, today: datetime.date) -> str:
    """Raise PaymentError unless the card would be charged; return its type."""
    kind, valid = card_type(card.number)
    if kind is None or not valid:
        raise PaymentError("Credit card info is invalid", 400)
    if kind not in ("visa", "mastercard"):
        raise PaymentError(
            f"Sorry, we cannot process {kind} credit cards. Only VISA or MasterCard is accepted.",
            400,
        )
    now = today.year * 12 + today.month
    if now > card.expiration_year * 12 + card.expiration_month:
        last4 = card.number.replace("-", "")[-4:]
        raise PaymentError(
            f"Your credit card (ending {last4}) expired on "
            f"{card.expiration_month}/{card.expiration_year}",
            400,
        )
    return kind


class Payment:
    def __init__(
        self, log: Log = _no_log, today: Callable[[], datetime.date] = datetime.date.today
    ) -> None:
        self.log = log
        self.today = today

    async def charge(self, amount: Money, card: CreditCardInfo) -> str:
        kind = validate_card(card, self.today())
        self.log(
            f"Transaction processed: {kind} ending {card.number.replace('-', '')[-4:]} "
            f"Amount: {amount.currency_code}{amount.units}.{amount.nanos}"
        )
        return str(uuid.uuid4())


# ------------------------------------------------------------------ email


class Email:
    """Dummy mode, as the original: log that a confirmation would be sent."""

    def __init__(self, log: Log = _no_log) -> None:
        self.log = log

    async def send_order_confirmation(self, email: str, order: Order) -> None:
        self.log(f"A request to send order confirmation email to {email} has been received.")


# ------------------------------------------------------------------ ads

ADS: dict[str, list[Ad]] = {
    "clothing": [Ad("/product/66VCHSJNUP", "Tank top for sale. 20% off.")],
    "accessories": [Ad("/product/1YMWWN1N4O", "Watch for sale. Buy one, get the second free.")],
    "footwear": [Ad("/product/L9ECAV7KIM", "Loafers for sale. Buy one, get the second free.")],
    "hair": [Ad("/product/2ZYFJ3GM2N", "Hairdryer for sale. 50% off.")],
    "decor": [Ad("/product/0PUK6V6EV0", "Candle holder for sale. 30% off.")],
    "kitchen": [
        Ad("/product/9SIQT8TOJO", "Bamboo glass jar for sale. 10% off."),
        Ad("/product/6E92ZMYYFZ", "Mug for sale. Buy two, get the third one free."),
    ],
}
ALL_ADS = [ad for ads in ADS.values() for ad in ads]


class Ads:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    async def get_ads(self, context_keys: list[str]) -> list[Ad]:
        found = [ad for key in context_keys for ad in ADS.get(key, [])]
        if not found:
            found = [self.rng.choice(ALL_ADS) for _ in range(2)]
        return found


# ------------------------------------------------------------------ recommendations

MAX_RECOMMENDATIONS = 5


class Recommendations:
    def __init__(self, catalog: ProductCatalogService, rng: random.Random | None = None) -> None:
        self.catalog = catalog
        self.rng = rng or random.Random()

    async def list_recommendations(self, user_id: str, product_ids: list[str]) -> list[str]:
        excluded = set(product_ids)
        candidates = [p.id for p in await self.catalog.list_products() if p.id not in excluded]
        return self.rng.sample(candidates, min(MAX_RECOMMENDATIONS, len(candidates)))


# ------------------------------------------------------------------ cart

CART_CACHE_SIZE = 1 << 20


class CartLRU:
    """The cart cache's store: user id -> items, least recently used evicted first."""

    def __init__(self, size: int = CART_CACHE_SIZE) -> None:
        self.size = size
        self.carts: OrderedDict[str, list[CartItem]] = OrderedDict()

    async def put(self, user_id: str, items: list[CartItem]) -> None:
        self.carts[user_id] = list(items)
        self.carts.move_to_end(user_id)
        while len(self.carts) > self.size:
            self.carts.popitem(last=False)

    async def lookup(self, user_id: str) -> list[CartItem] | None:
        items = self.carts.get(user_id)
        if items is not None:
            self.carts.move_to_end(user_id)
        return items

    async def remove(self, user_id: str) -> bool:
        return self.carts.pop(user_id, None) is not None


class Cart:
    """Stateless carts over a cache component (the Service Weaver port's design)."""

    def __init__(self, cache: CartCache) -> None:
        self.cache = cache

    async def add_item(self, user_id: str, item: CartItem) -> None:
        items = list(await self.cache.lookup(user_id) or [])
        for i, existing in enumerate(items):
            if existing.product_id == item.product_id:
                items[i] = CartItem(item.product_id, existing.quantity + item.quantity)
                break
        else:
            items.append(item)
        await self.cache.put(user_id, items)

    async def get_cart(self, user_id: str) -> list[CartItem]:
        return list(await self.cache.lookup(user_id) or [])

    async def empty_cart(self, user_id: str) -> None:
        await self.cache.remove(user_id)


# ------------------------------------------------------------------ checkout


class Checkout:
    """PlaceOrder in the original's order of calls (specification §2.5)."""

    def __init__(
        self,
        *,
        cart: CartService,
        catalog: ProductCatalogService,
        currency: CurrencyService,
        shipping: ShippingService,
        payment: PaymentService,
        email: EmailService,
        log: Log = _no_log,
    ) -> None:
        self.cart, self.catalog, self.currency = cart, catalog, currency
        self.shipping, self.payment, self.email = shipping, payment, email
        self.log = log

    async def place_order(self, request: PlaceOrderRequest) -> Order:
        order_id = str(uuid.uuid1())
        try:
            cart_items = await self.cart.get_cart(request.user_id)
        except Exception as exc:
            raise CheckoutError(f"failed to get user cart during checkout: {exc}") from exc
        order_items = []
        try:
            for item in cart_items:
                product = await self.catalog.get_product(item.product_id)
                price = await self.currency.convert(product.price_usd, request.user_currency)
                order_items.append(OrderItem(item, price))
        except Exception as exc:
            raise CheckoutError(f"failed to prepare order: {exc}") from exc
        try:
            shipping_usd = await self.shipping.get_quote(request.address, cart_items)
            shipping_cost = await self.currency.convert(shipping_usd, request.user_currency)
        except Exception as exc:
            raise CheckoutError(f"shipping quote failure: {exc}") from exc

        total = money_sum(zero(request.user_currency), shipping_cost)
        for order_item in order_items:
            total = money_sum(total, multiply_slow(order_item.cost, order_item.item.quantity))

        try:
            transaction_id = await self.payment.charge(total, request.credit_card)
        except Exception as exc:
            raise CheckoutError(f"failed to charge card: {exc}") from exc
        self.log(f"payment went through (transaction_id: {transaction_id})")

        try:
            tracking = await self.shipping.ship_order(request.address, cart_items)
        except Exception as exc:
            raise CheckoutError(f"shipping error: {exc}", 503) from exc

        try:
            await self.cart.empty_cart(request.user_id)
        except Exception as exc:  # the original ignores this failure
            self.log(f"failed to empty the cart of {request.user_id}: {exc}")

        order = Order(order_id, tracking, shipping_cost, request.address, order_items)
        try:
            await self.email.send_order_confirmation(request.email, order)
        except Exception as exc:  # best effort
            self.log(f"failed to send order confirmation to {request.email}: {exc}")
        return order


def order_total(order: Order) -> Money:
    """What the order page shows as paid: shipping + Σ unit cost x quantity."""
    total = order.shipping_cost
    for item in order.items:
        total = money_sum(total, multiply_slow(item.cost, item.item.quantity))
    return total
