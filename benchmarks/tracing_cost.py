"""The cost of tracing per component call: off vs on (every call sampled and recorded).

Measured in one process with ``weavertest``:
    local    a colocated call (``Runner("local")``): with tracing on, the local stub
             makes an ``internal`` span per call.
    remote   a call through the real codec and call protocol over loopback
             (``Runner("rpc")``): the caller's ``client`` span, the trace context in
             the request header, the callee's ``server`` span. Client and server
             are in this one process, so the figure is the sum of both sides' cost.
With tracing on, spans go through pyweaver's export path as in a weavelet
(``span_to_dict`` into a bounded buffer), every call under one sampled root span
(component stubs never start a trace). Batches of off and on alternate, after a
warm-up; each row is the median batch in microseconds per call, and the ratio on/off.

usage: python benchmarks/tracing_cost.py [--calls N] [--batches B] [--backend asyncio|trio]
       python benchmarks/run.py tracing
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from typing import Any, Protocol

import anyio

import pyweaver as weaver
from pyweaver._runtime._tracing import disable_tracing, enable_tracing, start_span
from pyweaver.weavertest import Runner


class Echo(Protocol):
    @weaver.not_retriable  # the rpc mode runs retriable calls twice
    async def echo(self, x: int) -> int: ...


class EchoImpl(weaver.Implements[Echo]):
    async def echo(self, x: int) -> int:
        return x


async def batch(echo: Echo, calls: int, traced: bool) -> float:
    """Microseconds per call of ``calls`` sequential calls."""
    if traced:
        buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)
        enable_tracing(buffer.append, sample_ratio=1.0, set_global=False)
    try:
        start = time.perf_counter_ns()
        if traced:
            with start_span("bench.root", require_parent=False):
                for i in range(calls):
                    await echo.echo(i)
        else:
            for i in range(calls):
                await echo.echo(i)
        elapsed = time.perf_counter_ns() - start
    finally:
        if traced:
            disable_tracing()
    return elapsed / calls / 1000


async def measure(mode: str, calls: int, batches: int) -> dict[str, Any]:
    async with Runner(mode) as app:
        echo = await app.get(Echo)
        await batch(echo, calls // 4, False)  # warm up both paths
        await batch(echo, calls // 4, True)
        off: list[float] = []
        on: list[float] = []
        for _ in range(batches):
            off.append(await batch(echo, calls, False))
            on.append(await batch(echo, calls, True))
    off_us, on_us = statistics.median(off), statistics.median(on)
    return {
        "off_us": round(off_us, 2),
        "on_us": round(on_us, 2),
        "added_us": round(on_us - off_us, 2),
        "ratio": round(on_us / off_us, 2),
        "spread_off": [round(min(off), 2), round(max(off), 2)],
        "spread_on": [round(min(on), 2), round(max(on), 2)],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "local": await measure("local", args.calls, args.batches),
        "remote": await measure("rpc", max(args.calls // 10, 100), args.batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per local batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = anyio.run(main_async, args, backend=args.backend)
    if args.json:
        print(json.dumps(results))
        return
    print(f"tracing cost per call ({args.backend}; median of {args.batches} batches)")
    print(f"{'call':8} {'off µs':>9} {'on µs':>9} {'added µs':>9} {'on/off':>7}")
    for name, row in results.items():
        print(
            f"{name:8} {row['off_us']:9.2f} {row['on_us']:9.2f} {row['added_us']:9.2f} "
            f"{row['ratio']:6.2f}x"
        )


if __name__ == "__main__":
    main()
