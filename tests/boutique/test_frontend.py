"""The web frontend through an httpx ASGI client, over the components in ``local`` and
``rpc`` modes: the 2023 routes, form fields, cookies and redirects of the original store
(specification §3), page contents, and errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import ModuleType

import httpx
import pytest
from boutique.frontend import make_frontend

from pyweaver import weavertest

pytestmark = pytest.mark.anyio

CHECKOUT_FORM = {
    "email": "someone@example.com",
    "street_address": "1600 Amphitheatre Parkway",
    "zip_code": "94043",
    "city": "Mountain View",
    "state": "CA",
    "country": "United States",
    "credit_card_number": "4432-8015-6152-0454",
    "credit_card_expiration_month": "1",
    "credit_card_expiration_year": "2039",
    "credit_card_cvv": "672",
}


@pytest.fixture(params=["local", "rpc"])
async def client(
    boutique_app: ModuleType, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    async with weavertest.Runner(request.param, app=str(boutique_app.__file__)) as app:
        frontend = make_frontend(await boutique_app.services(app))
        transport = httpx.ASGITransport(app=frontend)
        async with httpx.AsyncClient(transport=transport, base_url="http://boutique") as http:
            yield http


def session_cookie(response: httpx.Response) -> str:
    header = response.headers.get("set-cookie", "")
    match = re.match(r"shop_session-id=([0-9a-f-]{36}); Max-Age=172800$", header)
    assert match, header
    return match.group(1)


async def test_home_sets_a_session_cookie_once_and_lists_every_product(
    client: httpx.AsyncClient,
) -> None:
    home = await client.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    session = session_cookie(home)
    assert "Hot Products" in home.text and home.text.count('class="card product-card"') == 9
    assert "$19.99" in home.text and "$109.99" in home.text
    # The drop-down: the allow-listed currencies in service order.
    assert re.findall(r'<option value="([A-Z]{3})"', home.text) == [
        "EUR",
        "USD",
        "JPY",
        "GBP",
        "TRY",
        "CAD",
    ]
    again = await client.get("/")
    assert "set-cookie" not in again.headers and session in again.text
    assert (await client.head("/")).status_code == 200


async def test_set_currency_redirects_to_the_referer_and_converts_prices(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/")
    response = await client.post(
        "/setCurrency", data={"currency_code": "JPY"}, headers={"referer": "/product/OLJCESPC7Z"}
    )
    assert response.status_code == 302 and response.headers["location"] == "/product/OLJCESPC7Z"
    assert response.headers["set-cookie"] == "shop_currency=JPY; Max-Age=172800"
    page = await client.get("/product/OLJCESPC7Z")
    assert "¥2235.06" in page.text and "Sunglasses" in page.text
    no_referer = await client.post("/setCurrency", data={"currency_code": "EUR"})
    assert no_referer.headers["location"] == "/"
    assert "€17.68" in (await client.get("/")).text
    empty = await client.post("/setCurrency", data={"currency_code": ""})
    assert empty.status_code == 302 and "set-cookie" not in empty.headers


async def test_product_page_has_the_add_form_recommendations_and_an_ad(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/product/L9ECAV7KIM")
    assert page.status_code == 200 and "Loafers" in page.text and "$89.99" in page.text
    assert 'name="product_id" value="L9ECAV7KIM"' in page.text
    assert re.findall(r'<option value="(\d+)">', page.text) == ["1", "2", "3", "4", "5", "10"]
    assert "You May Also Like" in page.text
    recommended = re.findall(r'<a class="card" href="/product/(\w+)"', page.text)
    assert len(recommended) == 4 and "L9ECAV7KIM" not in recommended
    missing = await client.get("/product/NOPE")
    assert missing.status_code == 500 and "no product with ID NOPE" in missing.text


async def test_add_to_cart_view_cart_and_empty_it(client: httpx.AsyncClient) -> None:
    assert "Your shopping cart is empty!" in (await client.get("/cart")).text
    added = await client.post("/cart", data={"product_id": "OLJCESPC7Z", "quantity": "2"})
    assert added.status_code == 302 and added.headers["location"] == "/cart"
    await client.post("/cart", data={"product_id": "6E92ZMYYFZ", "quantity": "10"})
    cart = await client.get("/cart")
    assert (
        "Cart (12)" in cart.text and "SKU #OLJCESPC7Z" in cart.text and "Quantity: 10" in cart.text
    )
    # 2 x 19.99 + 10 x 8.99 + 8.99 shipping
    assert (
        "$39.98" in cart.text and "$89.90" in cart.text and 'id="total-cost">$138.87<' in cart.text
    )
    assert 'value="4432-8015-6152-0454"' in cart.text and 'value="someone@example.com"' in cart.text
    emptied = await client.post("/cart/empty")
    assert emptied.status_code == 302 and emptied.headers["location"] == "/"
    assert "Your shopping cart is empty!" in (await client.get("/cart")).text


async def test_add_to_cart_rejects_a_bad_form(client: httpx.AsyncClient) -> None:
    for form in (
        {"product_id": "", "quantity": "1"},
        {"product_id": "OLJCESPC7Z", "quantity": "0"},
        {"product_id": "OLJCESPC7Z", "quantity": "two"},
    ):
        response = await client.post("/cart", data=form)
        assert response.status_code == 400 and "invalid form input" in response.text


async def test_checkout_shows_the_order_and_empties_the_cart(client: httpx.AsyncClient) -> None:
    await client.post("/setCurrency", data={"currency_code": "EUR"})
    await client.post("/cart", data={"product_id": "OLJCESPC7Z", "quantity": "2"})
    order = await client.post("/cart/checkout", data=CHECKOUT_FORM)
    assert order.status_code == 200 and "Your order is complete!" in order.text
    assert re.search(r'id="order-id">[0-9a-f-]{36}<', order.text)
    assert re.search(r'id="tracking-id">[A-Y]{2}-44\d{3}-22\d{7}<', order.text)
    # 2 x 17.682441398 + 7.952233525 = 43.317116321
    assert 'id="total-paid">€43.31<' in order.text
    assert 'id="currency-form"' not in order.text
    assert "Your shopping cart is empty!" in (await client.get("/cart")).text


async def test_a_refused_card_is_an_error_page(client: httpx.AsyncClient) -> None:
    await client.post("/cart", data={"product_id": "OLJCESPC7Z", "quantity": "1"})
    response = await client.post(
        "/cart/checkout", data={**CHECKOUT_FORM, "credit_card_number": "378282246310005"}
    )
    assert response.status_code == 500
    assert "HTTP Status:</strong> 500" in response.text
    assert "Sorry, we cannot process amex credit cards" in response.text


async def test_logout_expires_every_cookie(client: httpx.AsyncClient) -> None:
    await client.get("/")
    await client.post("/setCurrency", data={"currency_code": "EUR"})
    response = await client.get("/logout")
    assert response.status_code == 302 and response.headers["location"] == "/"
    expired = response.headers.get_list("set-cookie")
    assert sorted(c.split("=")[0] for c in expired) == ["shop_currency", "shop_session-id"]
    assert all("Max-Age=0" in c and "Expires=" in c for c in expired)


async def test_static_files_robots_health_and_unknown_routes(client: httpx.AsyncClient) -> None:
    css = await client.get("/static/styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    client.cookies.clear()
    picture = await client.get("/static/img/products/mug.svg")
    assert picture.status_code == 200 and picture.text.startswith("<svg")
    assert "set-cookie" in picture.headers  # the session middleware runs on static files too
    assert (await client.get("/static/nope.png")).status_code == 404
    assert (await client.get("/robots.txt")).text == "User-agent: *\nDisallow: /\n"
    assert (await client.get("/_healthz")).text == "ok"
    assert (await client.get("/nowhere")).status_code == 404
    assert (await client.post("/")).status_code == 405
    assert (await client.get("/cart/checkout")).status_code == 405
