"""The Online Boutique's component interfaces: one Protocol per service.

The original's gRPC request and response wrappers are flattened into parameters and
results, as in the Service Weaver Go port. pyweaver names each component after its
interface, so these are ``boutique.api.CartService`` and so on (``colocated.toml`` lists
them). The benchmark's gRPC baseline implements the same Protocols with gRPC clients,
so the frontend and the business logic run unchanged over either transport.
"""

from __future__ import annotations

from typing import Protocol

import pyweaver as weaver

from .model import Ad, Address, CartItem, CreditCardInfo, Money, Order, PlaceOrderRequest, Product


class AdService(Protocol):
    async def get_ads(self, context_keys: list[str]) -> list[Ad]: ...


class CartService(Protocol):
    # Adding reads the cart, then writes it back one item longer: running it twice would
    # add the item twice.
    @weaver.not_retriable
    async def add_item(self, user_id: str, item: CartItem) -> None: ...

    async def get_cart(self, user_id: str) -> list[CartItem]: ...

    async def empty_cart(self, user_id: str) -> None: ...


class CartCache(Protocol):
    """An in-memory LRU of carts; routed by user id, so a user's cart stays on one replica.

    (The Go port calls these Add, Get and Remove; ``get`` would shadow ``Instance.get`` on
    the implementation, hence other names.)"""

    async def put(self, user_id: str, items: list[CartItem]) -> None: ...

    async def lookup(self, user_id: str) -> list[CartItem] | None: ...

    async def remove(self, user_id: str) -> bool: ...


class CheckoutService(Protocol):
    # Charges a card: never run it twice.
    @weaver.not_retriable
    async def place_order(self, request: PlaceOrderRequest) -> Order: ...


class CurrencyService(Protocol):
    async def get_supported_currencies(self) -> list[str]: ...

    async def convert(self, amount: Money, to_code: str) -> Money: ...


class EmailService(Protocol):
    async def send_order_confirmation(self, email: str, order: Order) -> None: ...


class PaymentService(Protocol):
    @weaver.not_retriable
    async def charge(self, amount: Money, card: CreditCardInfo) -> str: ...


class ProductCatalogService(Protocol):
    async def list_products(self) -> list[Product]: ...

    async def get_product(self, product_id: str) -> Product: ...

    async def search_products(self, query: str) -> list[Product]: ...


class RecommendationService(Protocol):
    async def list_recommendations(self, user_id: str, product_ids: list[str]) -> list[str]: ...


class ShippingService(Protocol):
    async def get_quote(self, address: Address, items: list[CartItem]) -> Money: ...

    async def ship_order(self, address: Address, items: list[CartItem]) -> str: ...
