"""The dashboard in a real browser: Debian's chromium (headless), driven by selenium
through chromium-driver, loads the dashboard of the factors example deployed with
``pyweaver multi deploy --trace 1`` after a bounded load, and finds the methods table,
the call graph and a trace that opens in Perfetto. The screenshot is kept in
``tests/artifacts/`` (its path is printed).

``scripts/install-test-deps.sh`` installs chromium and its driver (``make test`` runs
it); without them this test skips, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .test_deploy_examples import example_config
from .test_deploy_listeners import start, wait_for_listener

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
REQUESTS = 300  # the bounded load


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def dashboard_url(tmp_path: Path) -> Iterator[str]:
    """A multi deployment of factors under bounded load, and its dashboard's URL."""
    data_dir = tmp_path / "data"
    deploy = start(
        example_config("factors", tmp_path), data_dir, tmp_path / "deploy.log", "--trace", "1"
    )
    dashboard: subprocess.Popen[bytes] | None = None
    try:
        report = wait_for_listener(data_dir, deploy)
        (listener,) = report["listeners"]
        with httpx.Client(base_url=f"http://{listener['proxy']}", timeout=10) as client:
            for i in range(REQUESTS):
                assert client.get("/", params={"x": i % 97 + 1}).status_code == 200
            assert client.get("/", params={"x": 0}).status_code != 200  # one error
        log = (tmp_path / "dashboard.log").open("wb")
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "pyweaver", "multi", "dashboard", "--port", "0"],
            env={**os.environ, "PYWEAVER_DATA_DIR": str(data_dir)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        url = ""
        while not url and time.monotonic() < deadline:
            assert dashboard.poll() is None, (tmp_path / "dashboard.log").read_text()
            found = re.search(r"http://127\.0\.0\.1:\d+/", (tmp_path / "dashboard.log").read_text())
            url = found.group(0) if found else ""
            time.sleep(0.1)
        assert url, "the dashboard did not print its URL"
        yield url
    finally:
        if dashboard is not None:
            _stop(dashboard)
        _stop(deploy)


def test_dashboard_in_chromium(dashboard_url: str) -> None:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromedriver are needed: run scripts/install-test-deps.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400"):
        options.add_argument(argument)
    options.add_argument("--disable-dev-shm-usage")
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        browser.set_page_load_timeout(30)
        browser.get(dashboard_url)
        links = browser.find_elements(By.CSS_SELECTOR, "#deployments a")
        assert len(links) == 1, browser.page_source
        deployment_url = links[0].get_attribute("href")
        assert deployment_url
        # Spans reach the deployer in batches: reload until a trace is listed.
        deadline = time.monotonic() + 30
        while True:
            browser.get(deployment_url)
            if browser.find_elements(By.CSS_SELECTOR, "#traces a.perfetto"):
                break
            assert time.monotonic() < deadline, "no trace listed:\n" + browser.page_source
            time.sleep(1)
        rows = browser.find_elements(By.CSS_SELECTOR, "#methods tbody tr")
        cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        (factors,) = [c for c in cells if c[:2] == ["app.Factorer", "factors"]]
        # component, method, 6 last-minute figures, then since start: calls first.
        assert int(factors[8]) >= REQUESTS + 1, factors  # every call of the load
        assert factors[10] != "0.0%", factors  # the one error
        nodes = browser.find_elements(By.CSS_SELECTOR, "#graph svg g.node title")
        assert {n.get_attribute("textContent") for n in nodes} >= {"main", "app.Factorer"}
        assert browser.find_elements(By.CSS_SELECTOR, "#graph svg g.edge line")
        statuses = browser.find_elements(By.CSS_SELECTOR, "#components td.status-healthy")
        assert len(statuses) == 4  # main and three Factorer replicas
        perfetto = browser.find_element(By.CSS_SELECTOR, "#traces a.perfetto")
        assert (perfetto.get_attribute("href") or "").startswith("https://ui.perfetto.dev/#!/?url=")
        trace_url = browser.find_element(By.CSS_SELECTOR, "#traces a.trace-json").get_attribute(
            "href"
        )
        assert trace_url
        trace = httpx.get(trace_url, timeout=10).json()
        assert any(event["ph"] == "X" for event in trace["traceEvents"])
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "dashboard.png"
        browser.save_screenshot(str(screenshot))
        print(f"dashboard screenshot: {screenshot}")
    finally:
        browser.quit()
