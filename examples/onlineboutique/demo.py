"""Online Boutique demo: deploy the store, walk one shopper through it, keep serving.

Starts ``pyweaver multi deploy`` on a copy of ``weaver.toml`` (every component in its
own process; ``--colocated`` uses ``colocated.toml`` instead, all in one process), then
one shopper visits the home page, opens a product, switches to euros, adds two to the
cart, looks at the cart and checks out, each step printed. Then it prints the store's
address and serves until Ctrl-C. With ``DEMO_ONCE=1`` it stops after the walk.

The port is ``DEMO_PORT`` when set, else 12345 when free, else any free port; the store
binds 127.0.0.1 only. The deployment is stopped by its PID: SIGTERM, then SIGKILL after a
grace period, for the deployer and any of its processes still alive.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRACE_S = 20.0
READY_TIMEOUT_S = 120.0


def pick_port() -> int:
    wanted = int(os.environ.get("DEMO_PORT", "12345"))
    for port in (wanted, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise SystemExit("no free port")


def write_config(source: Path, directory: Path, port: int) -> Path:
    """``source`` with an absolute binary path and the listener on 127.0.0.1:port."""
    text = source.read_text(encoding="utf-8")
    text = text.replace('binary = "app.py"', f'binary = "{HERE / "app.py"}"')
    text = re.sub(r"localhost:12345", f"127.0.0.1:{port}", text)
    config = directory / source.name
    config.write_text(text, encoding="utf-8")
    return config


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """``pid``'s children, grandchildren, ... (from /proc), each with its start time, so
    that a PID the system has since reused for another process is never signalled."""
    children: dict[int, list[int]] = {}
    start: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
                start[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = start[child]
            todo.append(child)
    return found


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM the deployer; after the grace period SIGKILL it and whatever it left."""
    family = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    for pid, started in family.items():
        fields = _stat(pid)
        if fields is None or fields[19] != started:
            continue  # gone (or the PID now belongs to someone else)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return status


class Shopper:
    """A browser-like client: keeps cookies, follows redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl(), exc.read().decode()

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.cookies if c.name == name), "")


def find(pattern: str, page: str) -> str:
    match = re.search(pattern, page, re.S)
    return match.group(1).strip() if match else "?"


def step(title: str, status: int, detail: str) -> None:
    print(f"  {title:<30} {status}  {detail}", flush=True)
    if status != 200:
        raise SystemExit(f"step {title!r} failed with HTTP {status}")


PRICE = r'id="product-price">(.*?)<'
CHECKOUT_FORM = {
    "email": "someone@example.com", "street_address": "1600 Amphitheatre Parkway",
    "zip_code": "94043", "city": "Mountain View", "state": "CA", "country": "United States",
    "credit_card_number": "4432-8015-6152-0454", "credit_card_expiration_month": "1",
    "credit_card_expiration_year": "2039", "credit_card_cvv": "672",
}  # fmt: skip


def walk(base: str) -> None:
    shopper = Shopper(base)
    status, _, page = shopper.request("/")
    products = re.findall(r'href="/product/(\w+)"', page)
    session = shopper.cookie("shop_session-id")
    step("GET /", status, f"{len(products)} products; session {session}")

    product = "L9ECAV7KIM" if "L9ECAV7KIM" in products else products[0]
    status, _, page = shopper.request(f"/product/{product}")
    name = find(r'id="product-name">(.*?)<', page)
    step(f"GET /product/{product}", status, f"{name} at {find(PRICE, page)}")

    status, url, page = shopper.request("/setCurrency", {"currency_code": "EUR"})
    path, currency = urllib.parse.urlsplit(url).path, shopper.cookie("shop_currency")
    step("POST /setCurrency EUR", status, f"-> {path}; shop_currency={currency}")
    status, _, page = shopper.request(f"/product/{product}")
    step(f"GET /product/{product}", status, f"{name} now at {find(PRICE, page)}")

    status, url, page = shopper.request("/cart", {"product_id": product, "quantity": "2"})
    title = find(r"<h1>(Cart.*?)</h1>", page)
    shipping = find(r'id="shipping-cost">(.*?)<', page)
    total = find(r'id="total-cost">(.*?)<', page)
    path = urllib.parse.urlsplit(url).path
    step("POST /cart (2 items)", status, f"-> {path}; {title}, shipping {shipping}, total {total}")

    status, _, page = shopper.request("/cart/checkout", CHECKOUT_FORM)
    step("POST /cart/checkout", status, find(r"<h1>(.*?)</h1>", page))
    order_id = find(r'id="order-id">(.*?)<', page)
    tracking = find(r'id="tracking-id">(.*?)<', page)
    paid = find(r'id="total-paid">(.*?)<', page)
    print(f"    confirmation #{order_id}  tracking #{tracking}  total paid {paid}", flush=True)

    status, _, page = shopper.request("/cart")
    step("GET /cart", status, "empty after the order" if "is empty" in page else "NOT empty")


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(log.read_text(errors="replace")[-4000:])
            raise SystemExit(f"the deployment exited early (status {proc.returncode})")
        try:
            with urllib.request.urlopen(base + "/_healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    print(log.read_text(errors="replace")[-4000:])
    raise SystemExit(f"the store did not answer in {READY_TIMEOUT_S:.0f} s")


def main() -> int:
    source = HERE / ("colocated.toml" if "--colocated" in sys.argv[1:] else "weaver.toml")
    once = os.environ.get("DEMO_ONCE") == "1"
    with tempfile.TemporaryDirectory(prefix="boutique-demo-") as tmp:
        port = pick_port()
        config = write_config(source, Path(tmp), port)
        log = Path(tmp) / "deploy.log"
        argv = [sys.executable, "-m", "pyweaver", "multi", "deploy", str(config)]
        print(f"--- {' '.join(argv[1:])}  ({source.name}; logs in {log})", flush=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc, log)
            print(
                f"--- one shopper walks through the store ({len(descendants(proc.pid))} processes)"
            )
            walk(base)
            print(f"Online Boutique at {base}", flush=True)
            if not once:
                print("serving until Ctrl-C", flush=True)
                while proc.poll() is None:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            status = stop(proc)
            print(f"stopped the deployment (exit status {status})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
