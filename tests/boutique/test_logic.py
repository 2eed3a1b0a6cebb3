"""The store's business logic against the specification's values: money arithmetic,
currency conversion (§2.1, §2.2, §4.1), shipping (§2.3), card validation (§2.4), ads,
recommendations, carts and the checkout's order of calls (§2.5). No processes."""

from __future__ import annotations

import datetime
import random
import re
from typing import Any

import pytest
from boutique.logic import (
    ADS,
    Ads,
    Cart,
    CartLRU,
    Catalog,
    Checkout,
    Currency,
    Email,
    Payment,
    Recommendations,
    Shipping,
    card_type,
    convert_money,
    load_rates,
    order_total,
    tracking_id,
    validate_card,
)
from boutique.model import (
    Address,
    CartItem,
    CheckoutError,
    CreditCardInfo,
    Money,
    NotFoundError,
    PaymentError,
    PlaceOrderRequest,
    is_valid,
    money_sum,
    multiply_slow,
    render_money,
)

pytestmark = pytest.mark.anyio

RATES = load_rates()

# §4.1: converted unit prices ("units.nanos") in USD, EUR, CAD, JPY, GBP and TRY.
TABLE = """
OLJCESPC7Z 19.990000000 17.682441398 26.749997346 2235.060592707 15.201594869 108.299648830
66VCHSJNUP 18.990000000 16.797877046 25.411828395 2123.251658614 14.441134896 102.881957543
0PUK6V6EV0 18.990000000 16.797877046 25.411828395 2123.251658614 14.441134896 102.881957543
1YMWWN1N4O 109.990000000 97.293233083 147.185203007 12297.864661691 83.642992481 595.891864663
L9ECAV7KIM 89.990000000 79.601946042 120.421823972 10061.685979708 68.433793012 487.538038923
2ZYFJ3GM2N 24.990000000 22.105263158 33.440842105 2794.105263171 19.003894736 135.388105263
LS4PSXUNUM 18.490000000 16.355594870 24.742743919 2067.347191568 14.060904909 100.173111900
9SIQT8TOJO 5.490000000 4.856258293 7.346547545 613.831048235 4.174925254 29.743125167
6E92ZMYYFZ 8.990000000 7.952233525 12.030138876 1005.162317560 6.836535161 48.705044670
"""
CONVERTED = {line.split()[0]: tuple(line.split()[1:]) for line in TABLE.strip().splitlines()}
CODES = ("USD", "EUR", "CAD", "JPY", "GBP", "TRY")


def money(code: str, text: str) -> Money:
    units, nanos = text.split(".")
    return Money(code, int(units), int(nanos))


# ------------------------------------------------------------------ money


def test_sum_carries_nanos_into_units() -> None:
    assert money_sum(Money("USD", 1, 600_000_000), Money("USD", 2, 700_000_000)) == Money(
        "USD", 4, 300_000_000
    )
    assert money_sum(Money("USD", 0, 0), Money("USD", 0, 0)) == Money("USD", 0, 0)


def test_sum_truncates_toward_zero_for_negative_amounts() -> None:
    # -1.75 + -0.5 = -2.25: Go's truncating division, not Python's floor.
    assert money_sum(Money("USD", -1, -750_000_000), Money("USD", 0, -500_000_000)) == Money(
        "USD", -2, -250_000_000
    )


def test_sum_with_differing_signs_borrows() -> None:
    # 2.1 + -0.5 = 1.6
    assert money_sum(Money("USD", 2, 100_000_000), Money("USD", 0, -500_000_000)) == Money(
        "USD", 1, 600_000_000
    )
    # -2.1 + 0.5 = -1.6
    assert money_sum(Money("USD", -2, -100_000_000), Money("USD", 0, 500_000_000)) == Money(
        "USD", -1, -600_000_000
    )


def test_sum_rejects_invalid_values_and_mixed_currencies() -> None:
    with pytest.raises(ValueError, match="invalid value"):
        money_sum(Money("USD", 1, -1), Money("USD", 1, 0))
    with pytest.raises(ValueError, match="invalid value"):
        money_sum(Money("USD", 0, 1_000_000_000), Money("USD", 1, 0))
    with pytest.raises(ValueError, match="mismatching currency codes"):
        money_sum(Money("USD", 1, 0), Money("EUR", 1, 0))
    assert not is_valid(Money("USD", -1, 5)) and is_valid(Money("USD", 0, -5))


def test_multiply_slow_adds_repeatedly_and_keeps_the_zero_quirk() -> None:
    price = Money("USD", 19, 990_000_000)
    assert multiply_slow(price, 3) == Money("USD", 59, 970_000_000)
    assert multiply_slow(price, 10) == Money("USD", 199, 900_000_000)
    assert multiply_slow(price, 1) == price
    assert multiply_slow(price, 0) == price  # the original's quirk


def test_render_truncates_cents_and_picks_symbols() -> None:
    assert render_money(Money("USD", 26, 749_997_346)) == "$26.74"
    assert render_money(Money("JPY", 2235, 60_592_707)) == "¥2235.06"
    assert render_money(Money("EUR", 7, 952_233_525)) == "€7.95"
    assert render_money(Money("GBP", 15, 201_594_869)) == "£15.20"
    assert render_money(Money("TRY", 108, 299_648_830)) == "₺108.29"
    assert render_money(Money("CHF", 1, 0)) == "$1.00"


# ------------------------------------------------------------------ currency


@pytest.mark.parametrize("product_id", sorted(CONVERTED))
async def test_converted_prices_match_the_specification(product_id: str) -> None:
    product = await Catalog().get_product(product_id)
    for code, expected in zip(CODES, CONVERTED[product_id], strict=True):
        assert convert_money(product.price_usd, code, RATES) == money(code, expected), code


def test_shipping_cost_converts_like_the_mug() -> None:
    for code, expected in zip(CODES, CONVERTED["6E92ZMYYFZ"], strict=True):
        assert convert_money(Money("USD", 8, 990_000_000), code, RATES) == money(code, expected)


async def test_currency_service_lists_33_codes_in_file_order_and_rejects_unknown_ones() -> None:
    currency = Currency()
    codes = await currency.get_supported_currencies()
    assert len(codes) == 33 and codes[:4] == ["EUR", "USD", "JPY", "BGN"] and codes[-1] == "ZAR"
    assert [c for c in codes if c in CODES] == ["EUR", "USD", "JPY", "GBP", "TRY", "CAD"]
    with pytest.raises(Exception, match="XXX"):
        await currency.convert(Money("USD", 1, 0), "XXX")


# ------------------------------------------------------------------ catalog


async def test_catalog_lists_nine_products_in_file_order() -> None:
    catalog = Catalog()
    products = await catalog.list_products()
    assert [p.id for p in products][:3] == ["OLJCESPC7Z", "66VCHSJNUP", "1YMWWN1N4O"]
    assert len(products) == 9 and products[-1].name == "Mug"
    assert (await catalog.get_product("L9ECAV7KIM")).price_usd == Money("USD", 89, 990_000_000)
    with pytest.raises(NotFoundError, match="no product with ID nope"):
        await catalog.get_product("nope")
    assert [p.id for p in await catalog.search_products("MUG")] == ["6E92ZMYYFZ"]


# ------------------------------------------------------------------ shipping


async def test_shipping_is_a_flat_8_99_even_for_an_empty_cart() -> None:
    shipping = Shipping()
    assert await shipping.get_quote(Address(), []) == Money("USD", 8, 990_000_000)
    assert await shipping.get_quote(Address(), [CartItem("x", 10)]) == Money("USD", 8, 990_000_000)


def test_tracking_id_shape() -> None:
    address = Address("1600 Amphitheatre Parkway", "Mountain View", "CA", "United States", 94043)
    for seed in range(50):
        tracking = tracking_id(address, random.Random(seed))
        assert re.fullmatch(r"[A-Y]{2}-44\d{3}-22\d{7}", tracking), tracking


# ------------------------------------------------------------------ payment

TODAY = datetime.date(2023, 6, 15)


def card(number: str, year: int = 2039, month: int = 1) -> CreditCardInfo:
    return CreditCardInfo(number, 672, year, month)


def test_card_types_follow_the_validator_table() -> None:
    assert card_type("4432-8015-6152-0454") == ("visa", True)
    assert card_type("4432 8015 6152 0455") == ("visa", False)  # Luhn fails
    assert card_type("5555555555554444") == ("mastercard", True)
    assert card_type("378282246310005") == ("amex", True)
    assert card_type("4026000000000002")[0] == "visa_electron"
    assert card_type("9999999999999995") == (None, False)


def test_validate_card_accepts_visa_and_mastercard_only() -> None:
    assert validate_card(card("4432-8015-6152-0454"), TODAY) == "visa"
    assert validate_card(card("5555555555554444"), TODAY) == "mastercard"
    with pytest.raises(PaymentError, match=r"^Credit card info is invalid$"):
        validate_card(card("4432-8015-6152-0455"), TODAY)
    with pytest.raises(PaymentError, match="cannot process amex credit cards"):
        validate_card(card("378282246310005"), TODAY)
    with pytest.raises(PaymentError, match="cannot process visa_electron"):
        validate_card(card("4026000000000002"), TODAY)


def test_a_card_is_good_through_its_expiry_month() -> None:
    assert validate_card(card("4432-8015-6152-0454", 2023, 6), TODAY) == "visa"
    with pytest.raises(PaymentError, match=r"\(ending 0454\) expired on 5/2023"):
        validate_card(card("4432-8015-6152-0454", 2023, 5), TODAY)


async def test_charge_returns_a_uuid_and_does_not_check_the_cvv() -> None:
    payment = Payment(today=lambda: TODAY)
    transaction = await payment.charge(
        Money("EUR", 1, 0), CreditCardInfo("5555555555554444", 0, 2030, 1)
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", transaction)


# ------------------------------------------------------------------ ads, recommendations


async def test_ads_by_category_with_a_random_two_fallback() -> None:
    ads = Ads(random.Random(1))
    kitchen = await ads.get_ads(["kitchen"])
    assert [a.redirect_url for a in kitchen] == ["/product/9SIQT8TOJO", "/product/6E92ZMYYFZ"]
    assert len(await ads.get_ads(["hair", "beauty"])) == 1
    assert len(await ads.get_ads([])) == 2
    assert len(await ads.get_ads(["unknown"])) == 2
    assert sum(len(v) for v in ADS.values()) == 7


async def test_recommendations_exclude_the_given_products_and_cap_at_five() -> None:
    recommendations = Recommendations(Catalog(), random.Random(2))
    ids = await recommendations.list_recommendations("u", ["OLJCESPC7Z"])
    assert len(ids) == 5 and len(set(ids)) == 5 and "OLJCESPC7Z" not in ids
    all_but_two = [p.id for p in (await Catalog().list_products())[2:]]
    assert len(await recommendations.list_recommendations("u", all_but_two)) == 2


# ------------------------------------------------------------------ cart and checkout


async def test_cart_merges_quantities_keeps_order_and_empties() -> None:
    cart = Cart(CartLRU())
    assert await cart.get_cart("u") == []
    await cart.add_item("u", CartItem("A", 1))
    await cart.add_item("u", CartItem("B", 2))
    await cart.add_item("u", CartItem("A", 3))
    assert await cart.get_cart("u") == [CartItem("A", 4), CartItem("B", 2)]
    assert await cart.get_cart("v") == []
    await cart.empty_cart("u")
    assert await cart.get_cart("u") == []


async def test_cart_cache_evicts_the_least_recently_used() -> None:
    cache = CartLRU(size=2)
    await cache.put("a", [])
    await cache.put("b", [])
    await cache.lookup("a")
    await cache.put("c", [])
    assert await cache.lookup("b") is None and await cache.lookup("a") == []
    assert await cache.remove("c")
    assert not await cache.remove("c")


class Recorder:
    """Wraps a logic object and records each call's name in a shared list."""

    def __init__(self, name: str, target: Any, calls: list[str]) -> None:
        self.name, self.target, self.calls = name, target, calls

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any) -> Any:
            self.calls.append(f"{self.name}.{method}")
            return await getattr(self.target, method)(*args)

        return call


def checkout_with(calls: list[str], payment: Payment | None = None) -> tuple[Checkout, Cart]:
    cart = Cart(CartLRU())
    checkout = Checkout(
        cart=Recorder("cart", cart, calls),
        catalog=Recorder("catalog", Catalog(), calls),
        currency=Recorder("currency", Currency(), calls),
        shipping=Recorder("shipping", Shipping(), calls),
        payment=Recorder("payment", payment or Payment(), calls),
        email=Recorder("email", Email(), calls),
    )
    return checkout, cart


def order_request(currency: str = "EUR", number: str = "4432-8015-6152-0454") -> PlaceOrderRequest:
    return PlaceOrderRequest(
        user_id="u",
        user_currency=currency,
        address=Address("1600 Amphitheatre Parkway", "Mountain View", "CA", "United States", 94043),
        email="someone@example.com",
        credit_card=CreditCardInfo(number, 672, 2039, 1),
    )


async def test_checkout_calls_in_the_original_order_and_totals_correctly() -> None:
    calls: list[str] = []
    checkout, cart = checkout_with(calls)
    await cart.add_item("u", CartItem("OLJCESPC7Z", 2))
    await cart.add_item("u", CartItem("6E92ZMYYFZ", 1))
    order = await checkout.place_order(order_request("EUR"))
    assert calls == [
        "cart.get_cart",
        "catalog.get_product", "currency.convert",
        "catalog.get_product", "currency.convert",
        "shipping.get_quote", "currency.convert",
        "payment.charge",
        "shipping.ship_order",
        "cart.empty_cart",
        "email.send_order_confirmation",
    ]  # fmt: skip
    assert len(calls) == 7 + 2 * 2
    assert order.shipping_cost == Money("EUR", 7, 952_233_525)
    assert [i.cost for i in order.items] == [
        Money("EUR", 17, 682_441_398),
        Money("EUR", 7, 952_233_525),
    ]
    # 2 x 17.682441398 + 7.952233525 + 7.952233525
    assert order_total(order) == Money("EUR", 51, 269_349_846)
    assert await cart.get_cart("u") == []


async def test_a_refused_card_fails_checkout_before_shipping_and_keeps_the_cart() -> None:
    calls: list[str] = []
    checkout, cart = checkout_with(calls)
    await cart.add_item("u", CartItem("OLJCESPC7Z", 1))
    with pytest.raises(CheckoutError, match="failed to charge card: Credit card info is invalid"):
        await checkout.place_order(order_request(number="4432-8015-6152-0455"))
    assert "shipping.ship_order" not in calls
    assert await cart.get_cart("u") == [CartItem("OLJCESPC7Z", 1)]
