"""Online Boutique on pyweaver: Google's microservices demo store as one modular monolith.

Ten service components (ad, cart, checkout, currency, email, payment, product catalog,
recommendation, shipping, and the cart's routed cache) plus main, which serves the web
frontend on the ``boutique`` listener. The interfaces live in ``boutique/api.py``, the
business logic in ``boutique/logic.py`` (shared with the benchmark's gRPC baseline), the
web pages in ``boutique/frontend.py``. Each component below is a thin wrapper that gives
a logic object its logger and its references to other components.

Run it::

    python examples/onlineboutique/app.py                            # one process
    pyweaver single deploy examples/onlineboutique/weaver.toml       # the same
    pyweaver multi deploy examples/onlineboutique/weaver.toml        # a process per component
    pyweaver multi deploy examples/onlineboutique/colocated.toml     # all in one group

and open http://localhost:12345/.
"""

# mypy cannot pass a Protocol class where ``type[T]`` is expected (python/mypy#4717);
# ``Instance.get(CartService)`` is how pyweaver names a component.
# mypy: disable-error-code="type-abstract"

from __future__ import annotations

import anyio
import attrs
from boutique.api import (
    AdService,
    CartCache,
    CartService,
    CheckoutService,
    CurrencyService,
    EmailService,
    PaymentService,
    ProductCatalogService,
    RecommendationService,
    ShippingService,
)
from boutique.frontend import Services, make_frontend
from boutique.logic import (
    CART_CACHE_SIZE,
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
)
from boutique.model import (
    Ad,
    Address,
    CartItem,
    CreditCardInfo,
    Money,
    Order,
    PlaceOrderRequest,
    Product,
)

import pyweaver as weaver


class AdImpl(weaver.Implements[AdService]):
    async def init(self) -> None:
        self.ads = Ads()

    async def get_ads(self, context_keys: list[str]) -> list[Ad]:
        return await self.ads.get_ads(context_keys)


@attrs.frozen
class CartCacheConfig:
    size: int = CART_CACHE_SIZE


class CartCacheRouter:
    """Every call for one user goes to the same cache replica."""

    def put(self, user_id: str, items: list[CartItem]) -> str:
        return user_id

    def lookup(self, user_id: str) -> str:
        return user_id

    def remove(self, user_id: str) -> str:
        return user_id


class CartCacheImpl(
    weaver.Implements[CartCache],
    weaver.WithConfig[CartCacheConfig],
    weaver.WithRouter[CartCacheRouter],
):
    async def init(self) -> None:
        self.store = CartLRU(self.config.size)

    async def put(self, user_id: str, items: list[CartItem]) -> None:
        await self.store.put(user_id, items)

    async def lookup(self, user_id: str) -> list[CartItem] | None:
        return await self.store.lookup(user_id)

    async def remove(self, user_id: str) -> bool:
        return await self.store.remove(user_id)


class CartImpl(weaver.Implements[CartService]):
    cache: weaver.Ref[CartCache]

    async def init(self) -> None:
        self.cart = Cart(self.cache.get())

    async def add_item(self, user_id: str, item: CartItem) -> None:
        await self.cart.add_item(user_id, item)

    async def get_cart(self, user_id: str) -> list[CartItem]:
        return await self.cart.get_cart(user_id)

    async def empty_cart(self, user_id: str) -> None:
        await self.cart.empty_cart(user_id)


class CheckoutImpl(weaver.Implements[CheckoutService]):
    cart: weaver.Ref[CartService]
    catalog: weaver.Ref[ProductCatalogService]
    currency: weaver.Ref[CurrencyService]
    shipping: weaver.Ref[ShippingService]
    payment: weaver.Ref[PaymentService]
    email: weaver.Ref[EmailService]

    async def init(self) -> None:
        self.checkout = Checkout(
            cart=self.cart.get(),
            catalog=self.catalog.get(),
            currency=self.currency.get(),
            shipping=self.shipping.get(),
            payment=self.payment.get(),
            email=self.email.get(),
            log=self.logger.info,
        )

    async def place_order(self, request: PlaceOrderRequest) -> Order:
        return await self.checkout.place_order(request)


class CurrencyImpl(weaver.Implements[CurrencyService]):
    async def init(self) -> None:
        self.currency = Currency()

    async def get_supported_currencies(self) -> list[str]:
        return await self.currency.get_supported_currencies()

    async def convert(self, amount: Money, to_code: str) -> Money:
        return await self.currency.convert(amount, to_code)


class EmailImpl(weaver.Implements[EmailService]):
    async def init(self) -> None:
        self.email = Email(log=self.logger.info)

    async def send_order_confirmation(self, email: str, order: Order) -> None:
        await self.email.send_order_confirmation(email, order)


class PaymentImpl(weaver.Implements[PaymentService]):
    async def init(self) -> None:
        self.payment = Payment(log=self.logger.info)

    async def charge(self, amount: Money, card: CreditCardInfo) -> str:
        return await self.payment.charge(amount, card)


class ProductCatalogImpl(weaver.Implements[ProductCatalogService]):
    async def init(self) -> None:
        self.catalog = Catalog()

    async def list_products(self) -> list[Product]:
        return await self.catalog.list_products()

    async def get_product(self, product_id: str) -> Product:
        return await self.catalog.get_product(product_id)

    async def search_products(self, query: str) -> list[Product]:
        return await self.catalog.search_products(query)


class RecommendationImpl(weaver.Implements[RecommendationService]):
    catalog: weaver.Ref[ProductCatalogService]

    async def init(self) -> None:
        self.recommendations = Recommendations(self.catalog.get())

    async def list_recommendations(self, user_id: str, product_ids: list[str]) -> list[str]:
        return await self.recommendations.list_recommendations(user_id, product_ids)


class ShippingImpl(weaver.Implements[ShippingService]):
    async def init(self) -> None:
        self.shipping = Shipping()

    async def get_quote(self, address: Address, items: list[CartItem]) -> Money:
        return await self.shipping.get_quote(address, items)

    async def ship_order(self, address: Address, items: list[CartItem]) -> str:
        return await self.shipping.ship_order(address, items)


async def services(instance: weaver.Instance) -> Services:
    """The components the frontend calls, as seen from ``instance``."""
    return Services(
        catalog=await instance.get(ProductCatalogService),
        currency=await instance.get(CurrencyService),
        cart=await instance.get(CartService),
        recommendation=await instance.get(RecommendationService),
        checkout=await instance.get(CheckoutService),
        shipping=await instance.get(ShippingService),
        ad=await instance.get(AdService),
    )


async def main() -> None:
    root = await weaver.init()
    listener = await root.listener(
        "boutique", weaver.ListenerOptions(local_address="localhost:12345")
    )
    frontend = make_frontend(await services(root), logger=root.logger)
    root.logger.info("Online Boutique listener available", address=str(listener))
    await weaver.serve_asgi(listener, frontend)


if __name__ == "__main__":
    anyio.run(main)
