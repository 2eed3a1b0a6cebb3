"""End to end in a real headless Chromium: home, a product, a currency change, add to
cart, checkout, the confirmation. Screenshots of every step are saved as test artifacts
under ``$BOUTIQUE_ARTIFACTS`` (default ``tests/artifacts/boutique``, gitignored).

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install-test-deps.sh``
installs them) and selenium; skips with the reason when they are absent."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLE

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(
    os.environ.get(
        "BOUTIQUE_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts" / "boutique"
    )
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """The store in one process (python app.py) on 127.0.0.1; stopped by its PID."""
    port = free_port()
    config = tmp_path / "weaver.toml"
    config.write_text(
        f'[serviceweaver]\nbinary = "{EXAMPLE / "app.py"}"\n'
        f'[single]\nlisteners.boutique = {{address = "127.0.0.1:{port}"}}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "app.py")],
        env={**os.environ, "PYWEAVER_CONFIG": str(config)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/_healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "chromium and chromium-driver are not installed "
            "(scripts/install-test-deps.sh installs them)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--window-size=1280,1000",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_shopper_buys_sunglasses_in_euros(store: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    browser.get(store + "/")
    assert "Hot Products" in browser.page_source
    cards = browser.find_elements(By.CSS_SELECTOR, "a.product-card")
    assert len(cards) == 9
    assert browser.get_cookie("shop_session-id") is not None
    shot("1-home")

    browser.find_element(By.CSS_SELECTOR, 'a.product-card[data-id="OLJCESPC7Z"]').click()
    wait_for(lambda: browser.current_url.endswith("/product/OLJCESPC7Z"), "the product page")
    assert browser.find_element(By.ID, "product-name").text == "Sunglasses"
    assert browser.find_element(By.ID, "product-price").text == "$19.99"
    shot("2-product")

    # The drop-down submits itself on change and comes back to this page (the Referer).
    Select(browser.find_element(By.ID, "currency_code")).select_by_value("EUR")
    wait_for(
        lambda: browser.find_element(By.ID, "product-price").text == "€17.68", "prices in euros"
    )
    assert browser.current_url.endswith("/product/OLJCESPC7Z")
    assert browser.get_cookie("shop_currency")["value"] == "EUR"
    shot("3-euros")

    Select(browser.find_element(By.ID, "quantity")).select_by_value("2")
    browser.find_element(By.ID, "add-button").click()
    wait_for(lambda: browser.current_url.endswith("/cart"), "the cart page")
    assert "Cart (2)" in browser.page_source
    assert browser.find_element(By.ID, "cart-size").text == "2"
    assert browser.find_element(By.ID, "shipping-cost").text == "€7.95"
    # 2 x 17.682441398 + 7.952233525 = 43.317116321
    assert browser.find_element(By.ID, "total-cost").text == "€43.31"
    shot("4-cart")

    browser.find_element(By.ID, "place-order").click()
    wait_for(lambda: "Your order is complete!" in browser.page_source, "the confirmation")
    assert browser.find_element(By.ID, "total-paid").text == "€43.31"
    assert len(browser.find_element(By.ID, "order-id").text) == 36
    shot("5-order")

    browser.get(store + "/cart")
    assert "Your shopping cart is empty!" in browser.page_source
