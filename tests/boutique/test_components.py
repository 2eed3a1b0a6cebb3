"""The store's components through weavertest in every mode: a shopper's cart and
order, errors crossing the wire with their types, and methods that must not be retried
(``rpc`` mode runs every retriable call twice)."""

# mypy cannot pass a Protocol class where ``type[T]`` is expected (python/mypy#4717).
# mypy: disable-error-code="type-abstract"

from __future__ import annotations

from types import ModuleType

import pytest
from boutique.api import (
    AdService,
    CartCache,
    CartService,
    CheckoutService,
    CurrencyService,
    ProductCatalogService,
    RecommendationService,
)
from boutique.logic import order_total
from boutique.model import (
    Address,
    CartItem,
    CheckoutError,
    CreditCardInfo,
    Money,
    NotFoundError,
    PlaceOrderRequest,
)

from pyweaver import weavertest

pytestmark = pytest.mark.anyio

MODES = [
    pytest.param("local"),
    pytest.param("rpc"),
    pytest.param("multi", marks=pytest.mark.slow),
]
# One replica per group: with two cache replicas, a routing assignment that changes
# while replicas start moves users to another replica, whose cache does not have their
# cart (best-effort routing, as in Service Weaver).
CONFIG = "[multi]\nreplicas = 1\n"


def order(user: str, number: str = "4432-8015-6152-0454") -> PlaceOrderRequest:
    return PlaceOrderRequest(
        user_id=user,
        user_currency="EUR",
        address=Address("1600 Amphitheatre Parkway", "Mountain View", "CA", "United States", 94043),
        email="someone@example.com",
        credit_card=CreditCardInfo(number, 672, 2039, 1),
    )


@pytest.mark.parametrize("mode", MODES)
async def test_a_shopper_orders_through_the_components(
    boutique_app: ModuleType, mode: str, anyio_backend: str
) -> None:
    if mode == "multi" and anyio_backend == "trio":
        pytest.skip("multi mode runs once, on asyncio: it starts a process per component")
    async with weavertest.Runner(mode, config=CONFIG, app=str(boutique_app.__file__)) as app:
        catalog = await app.get(ProductCatalogService)
        currency = await app.get(CurrencyService)
        cart = await app.get(CartService)
        checkout = await app.get(CheckoutService)
        recommendation = await app.get(RecommendationService)
        ads = await app.get(AdService)

        products = await catalog.list_products()
        assert len(products) == 9
        assert await currency.convert(products[0].price_usd, "JPY") == Money(
            "JPY", 2235, 60_592_707
        )
        assert len(await recommendation.list_recommendations("ann", [products[0].id])) == 5
        assert [a.redirect_url for a in await ads.get_ads(["footwear"])] == ["/product/L9ECAV7KIM"]
        with pytest.raises(NotFoundError, match="no product with ID nope"):
            await catalog.get_product("nope")

        # add_item is not retriable: rpc mode would otherwise add every item twice.
        await cart.add_item("ann", CartItem("OLJCESPC7Z", 2))
        await cart.add_item("ann", CartItem("6E92ZMYYFZ", 1))
        await cart.add_item("ann", CartItem("OLJCESPC7Z", 1))
        await cart.add_item("bob", CartItem("9SIQT8TOJO", 5))
        assert await cart.get_cart("ann") == [CartItem("OLJCESPC7Z", 3), CartItem("6E92ZMYYFZ", 1)]
        assert await cart.get_cart("bob") == [CartItem("9SIQT8TOJO", 5)]

        with pytest.raises(
            CheckoutError, match="failed to charge card: Credit card info is invalid"
        ):
            await checkout.place_order(order("ann", number="4432-8015-6152-0455"))
        assert len(await cart.get_cart("ann")) == 2

        placed = await checkout.place_order(order("ann"))
        assert placed.shipping_cost == Money("EUR", 7, 952_233_525)
        # 3 x 17.682441398 + 7.952233525 + 7.952233525
        assert order_total(placed) == Money("EUR", 68, 951_791_244)
        assert await cart.get_cart("ann") == []
        assert await cart.get_cart("bob") == [CartItem("9SIQT8TOJO", 5)]


@pytest.mark.parametrize("mode", ["local", "rpc"])
async def test_the_cart_cache_answers_none_for_an_unknown_user(
    boutique_app: ModuleType, mode: str
) -> None:
    async with weavertest.Runner(mode, app=str(boutique_app.__file__)) as app:
        cache = await app.get(CartCache)
        assert await cache.lookup("nobody") is None
        await cache.put("ann", [CartItem("A", 1)])
        assert await cache.lookup("ann") == [CartItem("A", 1)]
        # remove is retriable (rpc mode runs it twice, and the second finds nothing), so
        # only its effect is checked.
        await cache.remove("ann")
        assert await cache.lookup("ann") is None
