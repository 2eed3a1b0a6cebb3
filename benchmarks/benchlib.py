"""Shared pieces of the remote benchmark scripts: the command-line convention,
the payloads, and the two load shapes every variant is measured with.

Every remote variant is one script that plays both roles:

    python benchmarks/X.py --serve --transport tcp|unix --backend B [extra flags]
        prints ``READY <endpoint>`` on stdout once it accepts connections, then
        serves until it is terminated (SIGTERM).
    python benchmarks/X.py --connect ENDPOINT --backend B --mode seq|inflight
                           --payload 16|65536 --seconds S [extra flags]
        makes one measurement against that server and prints one JSON line:
        ``{"p50_us": .., "p99_us": .., ...}`` for ``seq`` and
        ``{"calls_per_s": .., ...}`` for ``inflight``.

``benchmarks/run.py`` starts the server, runs one fresh client process per
measurement, and stops the server; it treats every variant alike, whichever
framework is inside.  The endpoint string is opaque to the runner: a script
prints what its own ``--connect`` understands (the ones here use
``tcp:127.0.0.1:PORT`` and ``unix:PATH``).

Load shapes (both bounded in call count and in wall-clock time):

- ``seq``: one caller, one call at a time.  A warm-up of up to 500 calls, then
  up to ``SEQ_MAX_CALLS`` timed calls capped at ``--seconds``; p50/p99 of the
  per-call latencies.
- ``inflight``: ``--inflight`` (64) callers running back-to-back calls.  A
  short warm-up, then the calls completed in a ``--seconds`` window.
  asyncio/trio clients share one connection between 64 tasks; thread-based
  clients (Pyro5, RPyC) run 64 threads, each with its own connection, which is
  how those frameworks are used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

HOST = "127.0.0.1"
SMALL = b"0123456789abcdef"
IN_FLIGHT = 64
SEQ_WARMUP_CALLS = 500
SEQ_MAX_CALLS = int(os.environ.get("BENCH_SEQ_CALLS", "5000"))
MAX_CALLS = 10_000_000  # a bound on every load loop, far above what a window reaches


def payload(size: int) -> bytes:
    """The echo payload: the research's 16-byte string, or a byte pattern of `size`."""
    if size == len(SMALL):
        return SMALL
    return (bytes(range(256)) * (size // 256 + 1))[:size]


# ------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None = None,
               add_extra: Callable[[argparse.ArgumentParser], None] | None = None,
               ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--serve", action="store_true")
    role.add_argument("--connect", metavar="ENDPOINT")
    parser.add_argument("--transport", choices=["tcp", "unix"], default="tcp")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--mode", choices=["seq", "inflight"], default="seq")
    parser.add_argument("--payload", type=int, default=len(SMALL))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--inflight", type=int, default=IN_FLIGHT)
    if add_extra is not None:
        add_extra(parser)
    return parser.parse_args(argv)


def ready(endpoint: str) -> None:
    sys.stdout.write(f"READY {endpoint}\n")
    sys.stdout.flush()


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def tcp_endpoint(port: int) -> str:
    return f"tcp:{HOST}:{port}"


def unix_socket_path() -> str:
    # The runner points TMPDIR at a directory it removes afterwards, so a
    # server killed by SIGTERM leaves nothing behind.
    return os.path.join(tempfile.mkdtemp(prefix="pwbench-"), "echo.sock")


def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``tcp:HOST:PORT`` -> ("tcp", HOST, PORT); ``unix:PATH`` -> ("unix", PATH, 0)."""
    kind, _, rest = endpoint.partition(":")
    if kind == "unix":
        return "unix", rest, 0
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return "tcp", host, int(port)
    raise ValueError(f"unknown endpoint {endpoint!r}")


def warmup_seconds(seconds: float) -> float:
    return min(0.5, max(0.1, seconds * 0.25))


# ------------------------------------------------------------------ statistics


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def latency_result(samples_ns: list[int], cpu_s: float) -> dict[str, Any]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "p50_us": percentile(ordered, 50) / 1000,
        "p99_us": percentile(ordered, 99) / 1000,
        "mean_us": sum(ordered) / n / 1000 if n else float("nan"),
        "calls": n,
        "client_cpu_us_per_call": cpu_s / max(n, 1) * 1e6,
    }


def check_echo(result: object, sent: object) -> None:
    if result != sent:
        raise RuntimeError(f"echo mismatch: sent {sent!r:.40}, got {result!r:.40}")


# ------------------------------------------------------------------ async load shapes


class TaskGroupLike(Protocol):
    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any: ...


async def measure_seq_async(call: Callable[[bytes], Awaitable[object]], data: bytes,
                            seconds: float) -> dict[str, Any]:
    check_echo(await call(data), data)
    warm_deadline = time.perf_counter() + warmup_seconds(seconds)
    for _ in range(SEQ_WARMUP_CALLS):
        await call(data)
        if time.perf_counter() > warm_deadline:
            break
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    cpu0 = time.process_time()
    for _ in range(SEQ_MAX_CALLS):
        t0 = clock()
        await call(data)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 > deadline:
            break
    return latency_result(samples, time.process_time() - cpu0)


async def measure_inflight_async(call: Callable[[bytes], Awaitable[object]], data: bytes,
                                 seconds: float, inflight: int,
                                 task_group: Callable[[], Any],
                                 sleep: Callable[[float], Awaitable[Any]]) -> dict[str, Any]:
    """`inflight` tasks sharing `call` run back-to-back calls; count those done in the window.

    task_group: factory of an async context manager whose value has start_soon()
    (anyio/trio task groups; `AsyncioTaskGroup` for plain asyncio).
    """
    check_echo(await call(data), data)
    state = {"phase": 0}  # 0 warm-up, 1 measuring, 2 stop
    counts = [0] * inflight
    marks: dict[str, float] = {}
    cap = MAX_CALLS // inflight + 1

    async def worker(i: int) -> None:
        n = 0
        while state["phase"] < 2 and n < cap:
            await call(data)
            if state["phase"] == 1:
                n += 1
        counts[i] = n

    async def timer() -> None:
        await sleep(warmup_seconds(seconds))
        state["phase"] = 1
        marks["t0"], marks["c0"] = time.perf_counter(), time.process_time()
        await sleep(seconds)
        state["phase"] = 2
        marks["t1"], marks["c1"] = time.perf_counter(), time.process_time()

    async with task_group() as group:
        group.start_soon(timer)
        for i in range(inflight):
            group.start_soon(worker, i)
    return inflight_result(sum(counts), marks)


def inflight_result(total: int, marks: dict[str, float]) -> dict[str, Any]:
    window = marks["t1"] - marks["t0"]
    return {
        "calls_per_s": total / window,
        "calls": total,
        "window_s": window,
        "client_cpu_us_per_call": (marks["c1"] - marks["c0"]) / max(total, 1) * 1e6,
    }


class AsyncioTaskGroup:
    """asyncio.TaskGroup with a start_soon() method, so one load loop serves every backend."""

    def __init__(self) -> None:
        import asyncio

        self._group = asyncio.TaskGroup()

    async def __aenter__(self) -> AsyncioTaskGroup:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._group.__aexit__(*exc_info)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._group.create_task(fn(*args))  # type: ignore[arg-type]


# ------------------------------------------------------------------ thread load shapes


def measure_seq_sync(call: Callable[[bytes], object], data: bytes, seconds: float) -> dict[str, Any]:
    check_echo(call(data), data)
    warm_deadline = time.perf_counter() + warmup_seconds(seconds)
    for _ in range(SEQ_WARMUP_CALLS):
        call(data)
        if time.perf_counter() > warm_deadline:
            break
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    cpu0 = time.process_time()
    for _ in range(SEQ_MAX_CALLS):
        t0 = clock()
        call(data)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 > deadline:
            break
    return latency_result(samples, time.process_time() - cpu0)


def measure_inflight_threads(make_call: Callable[[], Callable[[bytes], object]], data: bytes,
                             seconds: float, inflight: int) -> dict[str, Any]:
    """`inflight` threads, each with its own call object made by make_call() in the thread."""
    state = {"phase": 0}
    counts = [0] * inflight
    errors: list[str] = []
    start = threading.Barrier(inflight + 1, timeout=60)
    cap = MAX_CALLS // inflight + 1

    def worker(i: int) -> None:
        try:
            call = make_call()
            check_echo(call(data), data)  # connects and warms the connection
        except Exception as exc:
            errors.append(repr(exc))
            start.abort()
            return
        start.wait()
        n = 0
        while state["phase"] < 2 and n < cap:
            call(data)
            if state["phase"] == 1:
                n += 1
        counts[i] = n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(inflight)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"client threads failed to connect: {errors[:1]}") from None
    time.sleep(warmup_seconds(seconds))
    state["phase"] = 1
    marks = {"t0": time.perf_counter(), "c0": time.process_time()}
    time.sleep(seconds)
    state["phase"] = 2
    marks["t1"], marks["c1"] = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise RuntimeError(errors[0])
    return inflight_result(sum(counts), marks)
