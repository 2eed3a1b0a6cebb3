"""The benchmark's baseline: the Online Boutique as gRPC microservices, without pyweaver.

Each service is its own process serving grpc.aio with protobuf messages generated from
``boutique.proto`` (grpcio-tools, into a build directory at run time). The business
logic is the example's own ``boutique.logic`` and the web pages its own
``boutique.frontend``: only the transport differs from the pyweaver arms. Clients
implement the Protocols of ``boutique.api`` over gRPC stubs, so checkout, cart and
recommendation call their peers exactly as the components do.

    python grpc_arm.py deploy --port 12345     # 10 services + the frontend, 11 processes

``deploy`` starts every process, prints ``READY http://127.0.0.1:PORT`` once the frontend
answers, and on SIGTERM/SIGINT stops its children by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "onlineboutique"
sys.path.insert(0, str(EXAMPLE))

import grpc  # type: ignore[import-untyped]  # noqa: E402
from boutique.frontend import Services, make_frontend  # noqa: E402
from boutique.model import (  # noqa: E402
    Ad,
    Address,
    BoutiqueError,
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
)

from boutique import logic  # noqa: E402

SERVICES = [
    "cartcache",
    "cart",
    "catalog",
    "currency",
    "shipping",
    "payment",
    "email",
    "recommendation",
    "ad",
    "checkout",
]
GRACE_S = 10.0


def generate(build: Path) -> tuple[ModuleType, ModuleType]:
    """``boutique_pb2`` and ``boutique_pb2_grpc``, generated into ``build`` if absent."""
    if not (build / "boutique_pb2_grpc.py").exists():
        from grpc_tools import protoc  # type: ignore[import-untyped]

        build.mkdir(parents=True, exist_ok=True)
        status = protoc.main(
            [
                "protoc",
                f"-I{HERE}",
                f"--python_out={build}",
                f"--grpc_python_out={build}",
                str(HERE / "boutique.proto"),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
    sys.path.insert(0, str(build))
    return importlib.import_module("boutique_pb2"), importlib.import_module("boutique_pb2_grpc")


pb: Any = None
pb_grpc: Any = None

# ------------------------------------------------------------------ conversions


def money_pb(m: Money) -> Any:
    return pb.Money(currency_code=m.currency_code, units=m.units, nanos=m.nanos)


def money_py(m: Any) -> Money:
    return Money(m.currency_code, m.units, m.nanos)


def items_pb(items: list[CartItem]) -> list[Any]:
    return [pb.CartItem(product_id=i.product_id, quantity=i.quantity) for i in items]


def items_py(items: Any) -> list[CartItem]:
    return [CartItem(i.product_id, i.quantity) for i in items]


def address_pb(a: Address) -> Any:
    return pb.Address(
        street_address=a.street_address,
        city=a.city,
        state=a.state,
        country=a.country,
        zip_code=a.zip_code,
    )


def address_py(a: Any) -> Address:
    return Address(a.street_address, a.city, a.state, a.country, a.zip_code)


def card_pb(c: CreditCardInfo) -> Any:
    return pb.CreditCardInfo(
        credit_card_number=c.number,
        credit_card_cvv=c.cvv,
        credit_card_expiration_year=c.expiration_year,
        credit_card_expiration_month=c.expiration_month,
    )


def card_py(c: Any) -> CreditCardInfo:
    return CreditCardInfo(
        c.credit_card_number,
        c.credit_card_cvv,
        c.credit_card_expiration_year,
        c.credit_card_expiration_month,
    )


def product_pb(p: Product) -> Any:
    return pb.Product(
        id=p.id,
        name=p.name,
        description=p.description,
        picture=p.picture,
        price_usd=money_pb(p.price_usd),
        categories=p.categories,
    )


def product_py(p: Any) -> Product:
    return Product(
        p.id, p.name, p.description, p.picture, money_py(p.price_usd), list(p.categories)
    )


def order_pb(o: Order) -> Any:
    return pb.OrderResult(
        order_id=o.order_id,
        shipping_tracking_id=o.shipping_tracking_id,
        shipping_cost=money_pb(o.shipping_cost),
        shipping_address=address_pb(o.shipping_address),
        items=[
            pb.OrderItem(
                item=pb.CartItem(product_id=i.item.product_id, quantity=i.item.quantity),
                cost=money_pb(i.cost),
            )
            for i in o.items
        ],
    )


def order_py(o: Any) -> Order:
    return Order(
        o.order_id,
        o.shipping_tracking_id,
        money_py(o.shipping_cost),
        address_py(o.shipping_address),
        [
            OrderItem(CartItem(i.item.product_id, i.item.quantity), money_py(i.cost))
            for i in o.items
        ],
    )


ERROR_CODES: list[tuple[type[BoutiqueError], grpc.StatusCode]] = [
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PaymentError, grpc.StatusCode.INVALID_ARGUMENT),
    (CurrencyError, grpc.StatusCode.FAILED_PRECONDITION),
    (CheckoutError, grpc.StatusCode.INTERNAL),
]


async def call(method: Any, request: Any) -> Any:
    """``await method(request)``, with a service's error status turned back into its
    BoutiqueError class (the message is the status details)."""
    try:
        return await method(request)
    except grpc.aio.AioRpcError as exc:
        for kind, code in ERROR_CODES:
            if exc.code() == code:
                raise kind(exc.details() or "", 400 if kind is PaymentError else 500) from None
        raise BoutiqueError(f"rpc error: {exc.code().name}: {exc.details()}") from None


def handled(function: Any) -> Any:
    """A servicer method that maps BoutiqueError to a gRPC status."""

    async def method(self: Any, request: Any, context: Any) -> Any:
        try:
            return await function(self, request, context)
        except BoutiqueError as exc:
            code = next((c for k, c in ERROR_CODES if isinstance(exc, k)), grpc.StatusCode.INTERNAL)
            await context.abort(code, str(exc))

    return method


# ------------------------------------------------------------------ clients (the Protocols)


class CartCacheClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.CartCacheStub(channel)

    async def put(self, user_id: str, items: list[CartItem]) -> None:
        await call(self.stub.Add, pb.CacheAddRequest(user_id=user_id, items=items_pb(items)))

    async def lookup(self, user_id: str) -> list[CartItem] | None:
        reply = await call(self.stub.Get, pb.GetCartRequest(user_id=user_id))
        return items_py(reply.items) if reply.found else None

    async def remove(self, user_id: str) -> bool:
        reply = await call(self.stub.Remove, pb.GetCartRequest(user_id=user_id))
        return bool(reply.removed)


class CartClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.CartServiceStub(channel)

    async def add_item(self, user_id: str, item: CartItem) -> None:
        await call(
            self.stub.AddItem,
            pb.AddItemRequest(
                user_id=user_id,
                item=pb.CartItem(product_id=item.product_id, quantity=item.quantity),
            ),
        )

    async def get_cart(self, user_id: str) -> list[CartItem]:
        return items_py((await call(self.stub.GetCart, pb.GetCartRequest(user_id=user_id))).items)

    async def empty_cart(self, user_id: str) -> None:
        await call(self.stub.EmptyCart, pb.EmptyCartRequest(user_id=user_id))


class CatalogClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.ProductCatalogServiceStub(channel)

    async def list_products(self) -> list[Product]:
        return [product_py(p) for p in (await call(self.stub.ListProducts, pb.Empty())).products]

    async def get_product(self, product_id: str) -> Product:
        return product_py(await call(self.stub.GetProduct, pb.GetProductRequest(id=product_id)))

    async def search_products(self, query: str) -> list[Product]:
        reply = await call(self.stub.SearchProducts, pb.SearchProductsRequest(query=query))
        return [product_py(p) for p in reply.results]


class CurrencyClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.CurrencyServiceStub(channel)

    async def get_supported_currencies(self) -> list[str]:
        return list((await call(self.stub.GetSupportedCurrencies, pb.Empty())).currency_codes)

    async def convert(self, amount: Money, to_code: str) -> Money:
        request = pb.CurrencyConversionRequest(to_code=to_code)
        getattr(request, "from").CopyFrom(money_pb(amount))
        return money_py(await call(self.stub.Convert, request))


class ShippingClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.ShippingServiceStub(channel)

    async def get_quote(self, address: Address, items: list[CartItem]) -> Money:
        reply = await call(
            self.stub.GetQuote,
            pb.GetQuoteRequest(address=address_pb(address), items=items_pb(items)),
        )
        return money_py(reply.cost_usd)

    async def ship_order(self, address: Address, items: list[CartItem]) -> str:
        reply = await call(
            self.stub.ShipOrder,
            pb.ShipOrderRequest(address=address_pb(address), items=items_pb(items)),
        )
        return str(reply.tracking_id)


class PaymentClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.PaymentServiceStub(channel)

    async def charge(self, amount: Money, card: CreditCardInfo) -> str:
        reply = await call(
            self.stub.Charge, pb.ChargeRequest(amount=money_pb(amount), credit_card=card_pb(card))
        )
        return str(reply.transaction_id)


class EmailClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.EmailServiceStub(channel)

    async def send_order_confirmation(self, email: str, order: Order) -> None:
        await call(
            self.stub.SendOrderConfirmation,
            pb.SendOrderConfirmationRequest(email=email, order=order_pb(order)),
        )


class RecommendationClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.RecommendationServiceStub(channel)

    async def list_recommendations(self, user_id: str, product_ids: list[str]) -> list[str]:
        reply = await call(
            self.stub.ListRecommendations,
            pb.ListRecommendationsRequest(user_id=user_id, product_ids=product_ids),
        )
        return list(reply.product_ids)


class AdClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.AdServiceStub(channel)

    async def get_ads(self, context_keys: list[str]) -> list[Ad]:
        reply = await call(self.stub.GetAds, pb.AdRequest(context_keys=context_keys))
        return [Ad(a.redirect_url, a.text) for a in reply.ads]


class CheckoutClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.CheckoutServiceStub(channel)

    async def place_order(self, request: PlaceOrderRequest) -> Order:
        reply = await call(
            self.stub.PlaceOrder,
            pb.PlaceOrderRequest(
                user_id=request.user_id,
                user_currency=request.user_currency,
                address=address_pb(request.address),
                email=request.email,
                credit_card=card_pb(request.credit_card),
            ),
        )
        return order_py(reply.order)


CLIENTS: dict[str, Any] = {
    "cartcache": CartCacheClient,
    "cart": CartClient,
    "catalog": CatalogClient,
    "currency": CurrencyClient,
    "shipping": ShippingClient,
    "payment": PaymentClient,
    "email": EmailClient,
    "recommendation": RecommendationClient,
    "ad": AdClient,
    "checkout": CheckoutClient,
}


def client(peers: dict[str, int], name: str) -> Any:
    return CLIENTS[name](grpc.aio.insecure_channel(f"127.0.0.1:{peers[name]}"))


# ------------------------------------------------------------------ servicers


def log(message: str) -> None:
    pass  # the pyweaver arms log these lines; here they would go to a file nobody reads


def servicer(name: str, peers: dict[str, int]) -> tuple[Any, Any]:
    """(the servicer object, its add_*_to_server function) for service ``name``."""
    if name == "cartcache":
        store = logic.CartLRU()

        class CartCacheServicer(pb_grpc.CartCacheServicer):  # type: ignore[misc]
            @handled
            async def Add(self, request: Any, context: Any) -> Any:
                await store.put(request.user_id, items_py(request.items))
                return pb.Empty()

            @handled
            async def Get(self, request: Any, context: Any) -> Any:
                items = await store.lookup(request.user_id)
                return pb.CacheGetResponse(found=items is not None, items=items_pb(items or []))

            @handled
            async def Remove(self, request: Any, context: Any) -> Any:
                return pb.CacheRemoveResponse(removed=await store.remove(request.user_id))

        return CartCacheServicer(), pb_grpc.add_CartCacheServicer_to_server
    if name == "cart":
        cart = logic.Cart(client(peers, "cartcache"))

        class CartServicer(pb_grpc.CartServiceServicer):  # type: ignore[misc]
            @handled
            async def AddItem(self, request: Any, context: Any) -> Any:
                await cart.add_item(
                    request.user_id, CartItem(request.item.product_id, request.item.quantity)
                )
                return pb.Empty()

            @handled
            async def GetCart(self, request: Any, context: Any) -> Any:
                return pb.Cart(
                    user_id=request.user_id, items=items_pb(await cart.get_cart(request.user_id))
                )

            @handled
            async def EmptyCart(self, request: Any, context: Any) -> Any:
                await cart.empty_cart(request.user_id)
                return pb.Empty()

        return CartServicer(), pb_grpc.add_CartServiceServicer_to_server
    if name == "catalog":
        catalog = logic.Catalog()

        class CatalogServicer(pb_grpc.ProductCatalogServiceServicer):  # type: ignore[misc]
            @handled
            async def ListProducts(self, request: Any, context: Any) -> Any:
                return pb.ListProductsResponse(
                    products=[product_pb(p) for p in await catalog.list_products()]
                )

            @handled
            async def GetProduct(self, request: Any, context: Any) -> Any:
                return product_pb(await catalog.get_product(request.id))

            @handled
            async def SearchProducts(self, request: Any, context: Any) -> Any:
                found = await catalog.search_products(request.query)
                return pb.SearchProductsResponse(results=[product_pb(p) for p in found])

        return CatalogServicer(), pb_grpc.add_ProductCatalogServiceServicer_to_server
    if name == "currency":
        currency = logic.Currency()

        class CurrencyServicer(pb_grpc.CurrencyServiceServicer):  # type: ignore[misc]
            @handled
            async def GetSupportedCurrencies(self, request: Any, context: Any) -> Any:
                return pb.GetSupportedCurrenciesResponse(
                    currency_codes=await currency.get_supported_currencies()
                )

            @handled
            async def Convert(self, request: Any, context: Any) -> Any:
                return money_pb(
                    await currency.convert(money_py(getattr(request, "from")), request.to_code)
                )

        return CurrencyServicer(), pb_grpc.add_CurrencyServiceServicer_to_server
    if name == "shipping":
        shipping = logic.Shipping()

        class ShippingServicer(pb_grpc.ShippingServiceServicer):  # type: ignore[misc]
            @handled
            async def GetQuote(self, request: Any, context: Any) -> Any:
                cost = await shipping.get_quote(
                    address_py(request.address), items_py(request.items)
                )
                return pb.GetQuoteResponse(cost_usd=money_pb(cost))

            @handled
            async def ShipOrder(self, request: Any, context: Any) -> Any:
                tracking = await shipping.ship_order(
                    address_py(request.address), items_py(request.items)
                )
                return pb.ShipOrderResponse(tracking_id=tracking)

        return ShippingServicer(), pb_grpc.add_ShippingServiceServicer_to_server
    if name == "payment":
        payment = logic.Payment(log=log)

        class PaymentServicer(pb_grpc.PaymentServiceServicer):  # type: ignore[misc]
            @handled
            async def Charge(self, request: Any, context: Any) -> Any:
                transaction = await payment.charge(
                    money_py(request.amount), card_py(request.credit_card)
                )
                return pb.ChargeResponse(transaction_id=transaction)

        return PaymentServicer(), pb_grpc.add_PaymentServiceServicer_to_server
    if name == "email":
        email = logic.Email(log=log)

        class EmailServicer(pb_grpc.EmailServiceServicer):  # type: ignore[misc]
            @handled
            async def SendOrderConfirmation(self, request: Any, context: Any) -> Any:
                await email.send_order_confirmation(request.email, order_py(request.order))
                return pb.Empty()

        return EmailServicer(), pb_grpc.add_EmailServiceServicer_to_server
    if name == "recommendation":
        recommendations = logic.Recommendations(client(peers, "catalog"))

        class RecommendationServicer(pb_grpc.RecommendationServiceServicer):  # type: ignore[misc]
            @handled
            async def ListRecommendations(self, request: Any, context: Any) -> Any:
                ids = await recommendations.list_recommendations(
                    request.user_id, list(request.product_ids)
                )
                return pb.ListRecommendationsResponse(product_ids=ids)

        return RecommendationServicer(), pb_grpc.add_RecommendationServiceServicer_to_server
    if name == "ad":
        ads = logic.Ads()

        class AdServicer(pb_grpc.AdServiceServicer):  # type: ignore[misc]
            @handled
            async def GetAds(self, request: Any, context: Any) -> Any:
                found = await ads.get_ads(list(request.context_keys))
                return pb.AdResponse(
                    ads=[pb.Ad(redirect_url=a.redirect_url, text=a.text) for a in found]
                )

        return AdServicer(), pb_grpc.add_AdServiceServicer_to_server
    if name == "checkout":
        checkout = logic.Checkout(
            cart=client(peers, "cart"),
            catalog=client(peers, "catalog"),
            currency=client(peers, "currency"),
            shipping=client(peers, "shipping"),
            payment=client(peers, "payment"),
            email=client(peers, "email"),
            log=log,
        )

        class CheckoutServicer(pb_grpc.CheckoutServiceServicer):  # type: ignore[misc]
            @handled
            async def PlaceOrder(self, request: Any, context: Any) -> Any:
                order = await checkout.place_order(
                    PlaceOrderRequest(
                        user_id=request.user_id,
                        user_currency=request.user_currency,
                        address=address_py(request.address),
                        email=request.email,
                        credit_card=card_py(request.credit_card),
                    )
                )
                return pb.PlaceOrderResponse(order=order_pb(order))

        return CheckoutServicer(), pb_grpc.add_CheckoutServiceServicer_to_server
    raise SystemExit(f"unknown service {name!r}")


async def serve_service(name: str, port: int, peers: dict[str, int]) -> None:
    server = grpc.aio.server()
    impl, add = servicer(name, peers)
    add(impl, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_frontend(port: int, peers: dict[str, int]) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    services = Services(
        catalog=client(peers, "catalog"),
        currency=client(peers, "currency"),
        cart=client(peers, "cart"),
        recommendation=client(peers, "recommendation"),
        checkout=client(peers, "checkout"),
        shipping=client(peers, "shipping"),
        ad=client(peers, "ad"),
    )
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    await serve(make_frontend(services), config)  # type: ignore[arg-type]


# ------------------------------------------------------------------ deploy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy(port: int, build: Path) -> int:
    generate(build)
    peers = {name: free_port() for name in SERVICES}
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--build", str(build), "--peers", json.dumps(peers)]
    children = [
        subprocess.Popen([*me, "serve", name, *common], stdin=subprocess.DEVNULL)
        for name in SERVICES
    ]
    children.append(
        subprocess.Popen([*me, "frontend", "--port", str(port), *common], stdin=subprocess.DEVNULL)
    )
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        deadline = time.monotonic() + 60
        while not stopping and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_healthz", timeout=2
                ) as response:
                    if response.status == 200:
                        print(f"READY http://127.0.0.1:{port}", flush=True)
                        break
            except OSError:
                time.sleep(0.2)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        end = time.monotonic() + GRACE_S
        for child in children:
            try:
                child.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0


def main() -> int:
    global pb, pb_grpc
    parser = argparse.ArgumentParser(description="The Online Boutique as gRPC microservices.")
    parser.add_argument("command", choices=["deploy", "serve", "frontend"])
    parser.add_argument("service", nargs="?")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--build", type=Path)
    parser.add_argument("--peers", default="{}")
    args = parser.parse_args()
    if args.command == "deploy":
        if args.build is None:
            with tempfile.TemporaryDirectory(prefix="boutique-grpc-") as tmp:
                return deploy(args.port or free_port(), Path(tmp))
        return deploy(args.port or free_port(), args.build)
    pb, pb_grpc = generate(args.build)
    peers = json.loads(args.peers)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.command == "serve":
        asyncio.run(serve_service(args.service, peers[args.service], peers))
    else:
        asyncio.run(serve_frontend(args.port, peers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
