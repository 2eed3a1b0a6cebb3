"""The Online Boutique's web frontend: an ASGI app rendering jinja2 pages.

Routes, form fields, cookies and redirects are the 2023 original's (specification §3),
so a client written against the original store works against this one:

    GET  /                 home: every product at the user's currency
    GET  /product/{id}     one product, an add-to-cart form, recommendations, an ad
    GET  /cart             the cart, shipping, total and the checkout form
    POST /cart             product_id, quantity            -> 302 /cart (400 if invalid)
    POST /cart/empty                                       -> 302 /
    POST /cart/checkout    email, street_address, zip_code, city, state, country,
                           credit_card_number, credit_card_expiration_month,
                           credit_card_expiration_year, credit_card_cvv -> the order page
    POST /setCurrency      currency_code                   -> 302 Referer, else /
    GET  /logout           expires every cookie            -> 302 /
    GET  /static/...       CSS, the logo, product pictures
    *    /robots.txt, /_healthz

The session cookie ``shop_session-id`` (a random UUID, 48 h) is the user id of the cart;
``shop_currency`` holds the chosen currency (USD when absent). Each route is wrapped in
``weaver.instrument_handler`` under the Go port's label (home, product, cart, ...).

The frontend calls the services through the Protocols of ``boutique.api`` and makes the
original's calls in the original's order on every page (§3.3), including the USD→USD
conversions and the home page's unused ad.
"""

from __future__ import annotations

import datetime
import mimetypes
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import attrs
import jinja2

import pyweaver as weaver

from .api import (
    AdService,
    CartService,
    CheckoutService,
    CurrencyService,
    ProductCatalogService,
    RecommendationService,
    ShippingService,
)
from .logic import order_total
from .model import (
    Ad,
    Address,
    BoutiqueError,
    CartItem,
    CreditCardInfo,
    Money,
    PlaceOrderRequest,
    Product,
    money_sum,
    multiply_slow,
    render_money,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "shop_session-id"
CURRENCY_COOKIE = "shop_currency"
COOKIE_MAX_AGE = 172_800
DEFAULT_CURRENCY = "USD"
WHITELISTED_CURRENCIES = ("USD", "EUR", "CAD", "JPY", "GBP", "TRY")
AD_TIMEOUT_S = 0.1
RECOMMENDATIONS_SHOWN = 4
MAX_FORM_BYTES = 64 * 1024


@attrs.frozen
class Services:
    """The components the frontend calls."""

    catalog: ProductCatalogService
    currency: CurrencyService
    cart: CartService
    recommendation: RecommendationService
    checkout: CheckoutService
    shipping: ShippingService
    ad: AdService


class Response:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [(b"content-type", content_type.encode()), *(headers or [])]


def redirect(location: str) -> Response:
    return Response(302, b"", headers=[(b"location", location.encode())])


@attrs.define
class Request:
    scope: Scope
    receive: Receive
    session_id: str
    request_id: str
    cookies: dict[str, str]
    new_cookies: list[str] = attrs.field(factory=list)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def currency(self) -> str:
        return self.cookies.get(CURRENCY_COOKIE) or DEFAULT_CURRENCY

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key.lower() == name:
                return bytes(value).decode("latin-1")
        return None

    async def form(self) -> dict[str, str]:
        body = b""
        while True:
            message = await self.receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                raise BoutiqueError("form too large", 413)
            if not message.get("more_body", False):
                break
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in fields.items()}


Handler = Callable[[Request], Awaitable[Response]]


def parse_uint(text: str) -> int:
    """Go's strconv.ParseUint, where the original turns any failure into 0."""
    text = text.strip()
    return int(text) if text.isdigit() else 0


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


class Frontend:
    def __init__(self, services: Services, *, logger: weaver.Logger | None = None) -> None:
        self.services = services
        self.logger = logger
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            enable_async=False,
        )
        self.templates.filters["money"] = render_money
        self.hostname = socket.gethostname()
        self.static = self._load_static(HERE / "static")
        self.rng = random.Random()

    @staticmethod
    def _load_static(root: Path) -> dict[str, tuple[bytes, str]]:
        files = {}
        for path in root.rglob("*"):
            if path.is_file():
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind.endswith("+xml"):
                    kind += "; charset=utf-8"
                files["/static/" + path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
        return files

    # -------------------------------------------------------------- pages

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        context = {
            "session_id": request.session_id,
            "request_id": request.request_id,
            "user_currency": request.currency,
            "hostname": self.hostname,
            "show_currency": True,
            **values,
        }
        page = self.templates.get_template(template).render(context)
        return Response(status, page.encode())

    def error(self, request: Request, exc: Exception, status: int = 500) -> Response:
        if self.logger is not None:
            self.logger.error("request error", err=exc, path=request.path)
        reason = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(
            status, "Internal Server Error"
        )
        return self.render(
            request,
            "error.html",
            status,
            error=str(exc),
            status_code=status,
            status_text=reason,
            currencies=[],
            cart_size=0,
            show_currency=False,
        )

    async def currencies(self) -> list[str]:
        supported = await self.services.currency.get_supported_currencies()
        return [code for code in supported if code in WHITELISTED_CURRENCIES]

    async def cart_items(self, request: Request) -> list[CartItem]:
        return await self.services.cart.get_cart(request.session_id)

    async def ad(self, keys: list[str]) -> Ad | None:
        ads: list[Ad] = []
        with anyio.move_on_after(AD_TIMEOUT_S):
            try:
                ads = await self.services.ad.get_ads(keys)
            except Exception as exc:  # the ad is not on the critical path
                if self.logger is not None:
                    self.logger.error("failed to retrieve ads", err=exc)
        return self.rng.choice(ads) if ads else None

    async def recommendations(self, request: Request, product_ids: list[str]) -> list[Product]:
        try:
            ids = await self.services.recommendation.list_recommendations(
                request.session_id, product_ids
            )
            products = [await self.services.catalog.get_product(pid) for pid in ids]
        except Exception as exc:  # not on the critical path either
            if self.logger is not None:
                self.logger.error("failed to get product recommendations", err=exc)
            return []
        return products[:RECOMMENDATIONS_SHOWN]

    async def home(self, request: Request) -> Response:
        currencies = await self.currencies()
        products = await self.services.catalog.list_products()
        cart = await self.cart_items(request)
        prices = [
            await self.services.currency.convert(p.price_usd, request.currency) for p in products
        ]
        await self.ad([])  # the original asks for an ad here but never shows it
        return self.render(
            request,
            "home.html",
            currencies=currencies,
            products=list(zip(products, prices, strict=True)),
            cart_size=sum(item.quantity for item in cart),
        )

    async def product(self, request: Request) -> Response:
        product_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        if not product_id or product_id == "product":
            raise BoutiqueError("product id not specified", 400)
        product = await self.services.catalog.get_product(product_id)
        currencies = await self.currencies()
        cart = await self.cart_items(request)
        price = await self.services.currency.convert(product.price_usd, request.currency)
        recommendations = await self.recommendations(request, [product_id])
        ad = await self.ad(product.categories)
        return self.render(
            request,
            "product.html",
            product=product,
            price=price,
            currencies=currencies,
            cart_size=sum(item.quantity for item in cart),
            recommendations=recommendations,
            ad=ad,
        )

    async def view_cart(self, request: Request) -> Response:
        currencies = await self.currencies()
        cart = await self.cart_items(request)
        recommendations = await self.recommendations(request, [item.product_id for item in cart])
        shipping_usd = await self.services.shipping.get_quote(Address(), cart)
        shipping = await self.services.currency.convert(shipping_usd, request.currency)
        lines = []
        total = Money(request.currency, 0, 0)
        for item in cart:
            product = await self.services.catalog.get_product(item.product_id)
            price = await self.services.currency.convert(product.price_usd, request.currency)
            line_total = multiply_slow(price, item.quantity)
            lines.append((product, item.quantity, line_total))
            total = money_sum(total, line_total)
        total = money_sum(total, shipping)
        year = datetime.date.today().year
        return self.render(
            request,
            "cart.html",
            currencies=currencies,
            recommendations=recommendations,
            cart_size=sum(item.quantity for item in cart),
            shipping_cost=shipping,
            total_cost=total,
            items=lines,
            expiration_years=list(range(year, year + 5)),
        )

    async def add_to_cart(self, request: Request) -> Response:
        form = await request.form()
        quantity = parse_uint(form.get("quantity", ""))
        product_id = form.get("product_id", "")
        if not product_id or quantity == 0:
            raise BoutiqueError("invalid form input", 400)
        product = await self.services.catalog.get_product(product_id)
        await self.services.cart.add_item(request.session_id, CartItem(product.id, quantity))
        return redirect("/cart")

    async def empty_cart(self, request: Request) -> Response:
        await self.services.cart.empty_cart(request.session_id)
        return redirect("/")

    async def place_order(self, request: Request) -> Response:
        form = await request.form()
        order = await self.services.checkout.place_order(
            PlaceOrderRequest(
                user_id=request.session_id,
                user_currency=request.currency,
                address=Address(
                    street_address=form.get("street_address", ""),
                    city=form.get("city", ""),
                    state=form.get("state", ""),
                    country=form.get("country", ""),
                    zip_code=parse_int(form.get("zip_code", "")),
                ),
                email=form.get("email", ""),
                credit_card=CreditCardInfo(
                    number=form.get("credit_card_number", ""),
                    cvv=parse_int(form.get("credit_card_cvv", "")),
                    expiration_year=parse_int(form.get("credit_card_expiration_year", "")),
                    expiration_month=parse_int(form.get("credit_card_expiration_month", "")),
                ),
            )
        )
        recommendations = await self.recommendations(request, [])
        currencies = await self.currencies()
        return self.render(
            request,
            "order.html",
            show_currency=False,
            currencies=currencies,
            cart_size=0,
            order=order,
            total_paid=order_total(order),
            recommendations=recommendations,
        )

    async def set_currency(self, request: Request) -> Response:
        form = await request.form()
        code = form.get("currency_code", "")
        response = redirect(request.header(b"referer") or "/")
        if code:
            response.headers.append(
                (b"set-cookie", f"{CURRENCY_COOKIE}={code}; Max-Age={COOKIE_MAX_AGE}".encode())
            )
        return response

    async def logout(self, request: Request) -> Response:
        response = redirect("/")
        expired = time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 365 * 24 * 3600)
        )
        for name in request.cookies:
            response.headers.append(
                (b"set-cookie", f"{name}=; Expires={expired}; Max-Age=0".encode())
            )
        return response

    async def static_file(self, request: Request) -> Response:
        found = self.static.get(request.path)
        if found is None:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        body, kind = found
        return Response(200, body, kind, [(b"cache-control", b"max-age=3600")])

    async def robots(self, request: Request) -> Response:
        return Response(200, b"User-agent: *\nDisallow: /\n", "text/plain; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        return Response(200, b"ok", "text/plain; charset=utf-8")

    # -------------------------------------------------------------- routing

    def route(self, method: str, path: str) -> tuple[str, Handler | None]:
        """(metrics label, handler or None for 405); a label of "" means 404."""
        read = method in ("GET", "HEAD")
        if path == "/":
            return "home", self.home if read else None
        if path.startswith("/product/"):
            return "product", self.product if read else None
        if path == "/cart":
            if read:
                return "cart", self.view_cart
            return "cart", self.add_to_cart if method == "POST" else None
        if path == "/cart/empty":
            return "cart_empty", self.empty_cart if method == "POST" else None
        if path == "/cart/checkout":
            return "cart_checkout", self.place_order if method == "POST" else None
        if path == "/setCurrency":
            return "setcurrency", self.set_currency if method == "POST" else None
        if path == "/logout":
            return "logout", self.logout if read else None
        if path.startswith("/static/"):
            return "static", self.static_file if read else None
        if path == "/robots.txt":
            return "robots", self.robots
        if path == "/_healthz":
            return "healthz", self.healthz
        return "", None

    def asgi(self) -> ASGIApp:
        """The ASGI app: session cookie, dispatch, one instrumented handler per label."""
        labels = [
            "home", "product", "cart", "cart_empty", "cart_checkout", "setcurrency",
            "logout", "static", "robots", "healthz", "not_found",
        ]  # fmt: skip
        instrumented = {label: weaver.instrument_handler(label, self._serve) for label in labels}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            if scope["type"] != "http":
                return
            label, _ = self.route(scope["method"], scope["path"])
            await instrumented[label or "not_found"](scope, receive, send)

        return app

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        cookies: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            if key.lower() == b"cookie":
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(bytes(value).decode("latin-1"))
                except Exception:
                    continue
                cookies.update({name: morsel.value for name, morsel in jar.items()})
        session_id = cookies.get(SESSION_COOKIE, "")
        request = Request(scope, receive, session_id, str(uuid.uuid4()), cookies)
        if not session_id:
            request.session_id = str(uuid.uuid4())
            request.new_cookies.append(
                f"{SESSION_COOKIE}={request.session_id}; Max-Age={COOKIE_MAX_AGE}"
            )
        label, handler = self.route(request.method, request.path)
        try:
            if not label:
                response = Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
            elif handler is None:
                response = Response(405, b"method not allowed\n", "text/plain; charset=utf-8")
            else:
                response = await handler(request)
        except BoutiqueError as exc:
            response = self.error(request, exc, 400 if exc.code == 400 else 500)
        except Exception as exc:
            response = self.error(request, exc)
        headers = response.headers + [(b"set-cookie", c.encode()) for c in request.new_cookies]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if request.method == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})


def make_frontend(services: Services, *, logger: weaver.Logger | None = None) -> ASGIApp:
    return Frontend(services, logger=logger).asgi()
