"""An open-loop load generator for the Online Boutique, loopback only.

Simulated shoppers follow the original's 2023 locustfile mix (specification §6.1): each
task is picked with weight index 1, setCurrency 2, browseProduct 10, addToCart 2,
viewCart 3, checkout 1; a new shopper first loads ``/``; shoppers keep their cookies and
follow redirects (POST /setCurrency then GET /, POST /cart then GET /cart).

Unlike Locust, tasks *arrive* at a fixed mean rate (Poisson arrivals) whatever the
store's speed, and a task's latency is measured from the moment it was due to start, so
a slow server shows up as latency instead of silently lowering the offered load
(no coordinated omission). Locust's users wait for each response before the next
request (closed loop, even with ``constant_throughput``) and it runs on gevent, which
does not mix with anyio; hence httpx + anyio here.

It only ever talks to 127.0.0.1 or ::1. It reports latency percentiles per task kind
and overall, error counts, and, given ``--pid``, the CPU seconds per task of that
process and all its descendants (from /proc/PID/stat), i.e. of the whole deployment.

    python loadgen.py http://127.0.0.1:12345 --rate 50 --duration 20 --pid DEPLOYER_PID
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
import httpx

PRODUCTS = [
    "0PUK6V6EV0", "1YMWWN1N4O", "2ZYFJ3GM2N", "66VCHSJNUP", "6E92ZMYYFZ",
    "9SIQT8TOJO", "L9ECAV7KIM", "LS4PSXUNUM", "OLJCESPC7Z",
]  # fmt: skip
CURRENCIES = ["EUR", "USD", "JPY", "CAD"]
QUANTITIES = [1, 2, 3, 4, 5, 10]
TASKS = {
    "index": 1,
    "setCurrency": 2,
    "browseProduct": 10,
    "addToCart": 2,
    "viewCart": 3,
    "checkout": 1,
}
CHECKOUT_FORM = {
    "email": "someone@example.com", "street_address": "1600 Amphitheatre Parkway",
    "zip_code": "94043", "city": "Mountain View", "state": "CA", "country": "United States",
    "credit_card_number": "4432-8015-6152-0454", "credit_card_expiration_month": "1",
    "credit_card_expiration_year": "2039", "credit_card_cvv": "672",
}  # fmt: skip
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash, if its host is 127.0.0.1 or ::1; else an error."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host) in (
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        )
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the load generator only targets 127.0.0.1 or [::1], not {host!r}")
    return url.rstrip("/")


# ------------------------------------------------------------------ CPU of a process tree


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """user + system CPU seconds of each live pid (utime and stime of /proc/PID/stat)."""
    result = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return result


# ------------------------------------------------------------------ shoppers


class Shopper:
    """One simulated user: its cookies, and Locust-like redirect following."""

    def __init__(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        self.client = client
        self.rng = rng
        self.cookies: dict[str, str] = {}
        self.requests = 0

    async def request(self, method: str, path: str, form: dict[str, str] | None = None) -> None:
        for _ in range(5):  # follow at most a few redirects
            headers = {}
            if self.cookies:
                headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            response = await self.client.request(method, path, data=form, headers=headers)
            self.requests += 1
            for header in response.headers.get_list("set-cookie"):
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            if response.status_code in (301, 302, 303):
                method, path, form = "GET", response.headers["location"], None
                continue
            if response.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f"{method} {path}: HTTP {response.status_code}",
                    request=response.request,
                    response=response,
                )
            return

    async def run(self, task: str) -> None:
        if task == "index":
            await self.request("GET", "/")
        elif task == "setCurrency":
            await self.request(
                "POST", "/setCurrency", {"currency_code": self.rng.choice(CURRENCIES)}
            )
        elif task == "browseProduct":
            await self.request("GET", f"/product/{self.rng.choice(PRODUCTS)}")
        elif task == "addToCart":
            await self.add_to_cart()
        elif task == "viewCart":
            await self.request("GET", "/cart")
        elif task == "checkout":
            await self.add_to_cart()
            await self.request("POST", "/cart/checkout", CHECKOUT_FORM)
        elif task == "on_start":
            await self.request("GET", "/")
        else:
            raise ValueError(task)

    async def add_to_cart(self) -> None:
        product = self.rng.choice(PRODUCTS)
        await self.request("GET", f"/product/{product}")
        quantity = str(self.rng.choice(QUANTITIES))
        await self.request("POST", "/cart", {"product_id": product, "quantity": quantity})


# ------------------------------------------------------------------ the run


@attrs.define
class Report:
    rate: float
    duration: float
    offered: int = 0
    completed: int = 0
    errors: dict[str, int] = attrs.field(factory=dict)
    dropped: int = 0
    http_requests: int = 0
    latencies_ms: dict[str, list[float]] = attrs.field(factory=dict)
    cpu_seconds: float | None = None
    cpu_by_process: dict[str, float] = attrs.field(factory=dict)
    loadgen_cpu_seconds: float = 0.0
    machine_cpu_seconds: float = 0.0
    achieved_rate: float = 0.0

    def percentile(self, q: float, task: str | None = None) -> float:
        values = sorted(
            self.latencies_ms.get(task, [])
            if task
            else [v for vs in self.latencies_ms.values() for v in vs]
        )
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]

    def summary(self) -> dict[str, Any]:
        error_count = sum(self.errors.values())
        return {
            "rate": self.rate,
            "duration": self.duration,
            "offered": self.offered,
            "completed": self.completed,
            "achieved_rate": round(self.achieved_rate, 2),
            "errors": error_count,
            "error_kinds": dict(self.errors),
            "dropped": self.dropped,
            "http_requests": self.http_requests,
            "p50_ms": round(self.percentile(50), 3),
            "p90_ms": round(self.percentile(90), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(
                statistics.fmean(v for vs in self.latencies_ms.values() for v in vs), 3
            )
            if self.completed
            else math.nan,
            "per_task": {
                task: {
                    "count": len(values),
                    "p50_ms": round(self.percentile(50, task), 3),
                    "p99_ms": round(self.percentile(99, task), 3),
                }
                for task, values in sorted(self.latencies_ms.items())
            },
            "cpu_seconds": self.cpu_seconds,
            "cpu_ms_per_task": round(1000 * self.cpu_seconds / self.completed, 3)
            if self.cpu_seconds is not None and self.completed
            else None,
            "cores": round(self.cpu_seconds / self.duration, 3)
            if self.cpu_seconds is not None
            else None,
            "cpu_by_process": self.cpu_by_process,
            "loadgen_cores": round(self.loadgen_cpu_seconds / self.duration, 3),
            # Everything else the machine ran meanwhile (other users, the OS): noise.
            "foreign_cores": round(
                (self.machine_cpu_seconds - self.loadgen_cpu_seconds - (self.cpu_seconds or 0.0))
                / self.duration,
                3,
            ),
        }


def process_name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [w.decode(errors="replace") for w in cmdline if w]
    return f"{pid} {' '.join(Path(w).name if '/' in w else w for w in words[:4])}"[:80]


async def run_load(
    url: str,
    *,
    rate: float,
    duration: float,
    warmup: float = 2.0,
    pid: int | None = None,
    seed: int = 1,
    max_in_flight: int = 512,
    timeout: float = 30.0,
) -> Report:
    """Offer ``rate`` tasks per second for ``warmup + duration`` seconds; measure the last
    ``duration`` seconds (tasks due in that window, CPU spent in it)."""
    base = check_loopback(url)
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    rng = random.Random(seed)
    names, weights = list(TASKS), list(TASKS.values())
    report = Report(rate=rate, duration=duration)
    idle: list[Shopper] = []
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    in_flight = 0

    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=timeout, trust_env=False
    ) as client:
        start = time.monotonic()
        measure_from = start + warmup
        end = measure_from + duration
        cpu_start: dict[int, float] = {}
        own_start, machine_start = own_cpu_seconds(), machine_busy_seconds()
        measuring = False

        async def one(task: str, due: float, measured: bool) -> None:
            nonlocal in_flight
            shopper = idle.pop() if idle else None
            try:
                if shopper is None:
                    shopper = Shopper(client, random.Random(rng.random()))
                    await shopper.run("on_start")
                before = shopper.requests
                await shopper.run(task)
                if measured:
                    report.completed += 1
                    report.http_requests += shopper.requests - before
                    report.latencies_ms.setdefault(task, []).append(1000 * (time.monotonic() - due))
            except Exception as exc:
                if measured:
                    kind = f"{task}: {type(exc).__name__}"
                    if isinstance(exc, httpx.HTTPStatusError):
                        kind = f"{task}: HTTP {exc.response.status_code}"
                    report.errors[kind] = report.errors.get(kind, 0) + 1
                shopper = None  # a failed shopper is dropped; a new one takes its place
            finally:
                in_flight -= 1
                if shopper is not None:
                    idle.append(shopper)

        async with anyio.create_task_group() as group:
            due = start
            while True:
                due += rng.expovariate(rate)
                if due >= end:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                if not measuring and due >= measure_from:
                    measuring = True
                    own_start, machine_start = own_cpu_seconds(), machine_busy_seconds()
                    if pid is not None:
                        cpu_start = cpu_seconds(process_tree(pid))
                measured = due >= measure_from
                if measured:
                    report.offered += 1
                if in_flight >= max_in_flight:
                    if measured:
                        report.dropped += 1
                    continue
                in_flight += 1
                group.start_soon(one, rng.choices(names, weights)[0], due, measured)
            remaining = end - time.monotonic()
            if remaining > 0:
                await anyio.sleep(remaining)
            report.loadgen_cpu_seconds = round(own_cpu_seconds() - own_start, 3)
            report.machine_cpu_seconds = round(machine_busy_seconds() - machine_start, 3)
            if pid is not None:
                cpu_end = cpu_seconds(process_tree(pid))
                spent = {p: cpu_end[p] - cpu_start.get(p, 0.0) for p in cpu_end}
                report.cpu_seconds = round(sum(spent.values()), 3)
                report.cpu_by_process = {
                    process_name(p): round(s, 3) for p, s in sorted(spent.items()) if s > 0
                }
            # Tasks still running finish (bounded by the client timeout) but end late.
        report.achieved_rate = report.completed / duration
    return report


def print_report(summary: dict[str, Any]) -> None:
    s = summary
    print(
        f"offered {s['offered']} tasks at {s['rate']}/s for {s['duration']} s: "
        f"{s['completed']} completed ({s['achieved_rate']}/s), {s['errors']} errors, "
        f"{s['dropped']} dropped, {s['http_requests']} HTTP requests"
    )
    print(
        f"latency ms: p50 {s['p50_ms']}  p90 {s['p90_ms']}  p99 {s['p99_ms']}  mean {s['mean_ms']}"
    )
    for task, row in summary["per_task"].items():
        print(f"  {task:<14} {row['count']:>6}  p50 {row['p50_ms']:>9}  p99 {row['p99_ms']:>9}")
    if summary["error_kinds"]:
        print("errors:", summary["error_kinds"])
    if summary["cpu_seconds"] is not None:
        print(
            f"CPU: {s['cpu_seconds']} s over {s['duration']} s = {s['cores']} cores; "
            f"{s['cpu_ms_per_task']} ms per task"
        )
        for name, seconds in summary["cpu_by_process"].items():
            print(f"  {seconds:>8.3f} s  {name}")
    print(
        f"load generator: {s['loadgen_cores']} cores; other processes: {s['foreign_cores']} cores"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the store, e.g. http://127.0.0.1:12345 (loopback only)")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks per second (default 20)")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds (default 20)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--pid", type=int, help="the deployment's root process, for CPU accounting")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-in-flight", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead")
    args = parser.parse_args(argv)
    if args.duration > 3600 or args.rate > 100_000:
        parser.error("bounded: --duration at most 3600 s, --rate at most 100000/s")
    report = anyio.run(
        lambda: run_load(
            args.url, rate=args.rate, duration=args.duration, warmup=args.warmup,
            pid=args.pid, seed=args.seed, max_in_flight=args.max_in_flight,
        )
    )  # fmt: skip
    if args.json:
        print(json.dumps(report.summary()))
    else:
        print_report(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
