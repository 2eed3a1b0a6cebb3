"""In-process: a colocated pyweaver component call next to a plain ``await obj.method(x)``.

Both loops are the same code, ``for i in range(n): await target.echo(i)``; only
the target differs:
    plain-await    an ordinary object with ``async def echo(self, x: int) -> int``
    pyweaver-call  the stub ``await weaver.get(Echo, root)`` returns in a
                   single-process app (``root = await weaver.init()``), with the
                   runtime's defaults: metrics recorded, tracing off.
                   This is the C stub method (``_localcall.c``) when pyweaver
                   was built with it, as the runtime uses it.
    pyweaver-call-nohooks  the same stub built with its tracing hooks removed
                   (``make_stub(..., tracing_hooks=False)``): the yardstick for
                   "tracing off costs almost nothing".
    pyweaver-call-traced   pyweaver-call with tracing on, every call sampled (spans
                   kept, not exported); measured last, after tracing is turned on.
    bare-wrapper   the cheapest wrapper there is in Python: ``async def echo(x):
                   return await impl.echo(x)`` (no metrics, no checks): the floor of
                   a pure-Python stub that counts calls and errors, which needs a
                   frame around the call (the C stub makes none).
Batches of the rows alternate in one process (45 each after calibration, in an order
reversed at every batch), so they see the same CPU states; each row reports the mean of
its batches without the fastest and slowest tenth (ns per call, including the loop; see
``row``), the median batch and the batch min..max.

With ``--no-speedups`` the process runs with PYWEAVER_NO_SPEEDUPS=1: every stub is the
pure-Python one, as where pyweaver was installed without a C compiler (the jobs
``local-asyncio-pure`` and ``local-trio-pure``).

usage: local_calls.py --backend asyncio|asyncio+uvloop|trio [--seconds S] [--no-speedups]
prints {"rows": {"plain-await": {...}, "pyweaver-call": {...} or {"failed": why}}}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

if "--no-speedups" in sys.argv:  # before pyweaver is imported: it reads this once
    os.environ["PYWEAVER_NO_SPEEDUPS"] = "1"

import pyweaver as weaver

BATCHES = 45


class Echo(Protocol):
    async def echo(self, x: int) -> int: ...


class Plain:
    async def echo(self, x: int) -> int:
        return x


class EchoImpl(weaver.Implements[Echo]):
    async def echo(self, x: int) -> int:
        return x


class BareWrapper:
    """One ``async def`` frame around a plain await, and nothing else."""

    def __init__(self, inner: Plain) -> None:
        bound = inner.echo

        async def echo(x: int) -> int:
            return await bound(x)

        self.echo = echo


async def loop(target: Any, n: int) -> float:
    """ns per call of n sequential awaits of target.echo(i)."""
    start = time.perf_counter_ns()
    for i in range(n):
        await target.echo(i)
    return (time.perf_counter_ns() - start) / n


async def calibrate(target: Any, batch_s: float) -> int:
    n = 1000
    while True:
        per_call = await loop(target, n)
        if per_call * n > 20e6 or n >= 50_000_000:  # 20 ms is enough to size a batch
            return max(1000, int(batch_s * 1e9 / per_call))
        n *= 4


def row(samples: list[float]) -> dict[str, float]:
    """ns_per_call: the mean of the batches without the fastest and slowest tenth.

    On the benchmark VM the CPU flips between a fast and a slow state (~1.8x apart,
    seconds at a time, with nothing else running), so a row's batches are two clusters.
    The batches of the rows alternate, so every row sees about the same share of each
    state; a median lands in one cluster or the other depending on that share, and two
    rows' medians could come from different clusters (a 1.04x "difference" between two
    identical stubs). The trimmed mean weighs both clusters as they came, and still
    drops the odd preempted batch. The median batch is reported too."""
    ordered = sorted(samples)
    cut = len(ordered) // 10
    kept = ordered[cut : len(ordered) - cut] or ordered
    return {"ns_per_call": statistics.fmean(kept), "batch_median_ns": statistics.median(ordered),
            "batch_min_ns": ordered[0], "batch_max_ns": ordered[-1]}


async def measure(seconds: float) -> dict[str, Any]:
    targets: dict[str, Any] = {"plain-await": Plain(), "bare-wrapper": BareWrapper(Plain())}
    rows: dict[str, Any] = {}
    try:
        root = await weaver.init()
        stub = await weaver.get(Echo, root)  # type: ignore[type-abstract]  # a Protocol is the interface
        if await stub.echo(7) != 7:
            raise RuntimeError("the component stub returned a wrong value")
        targets["pyweaver-call"] = stub
        try:
            targets["pyweaver-call-nohooks"] = await another_stub(tracing_hooks=False)
        except Exception as exc:
            rows["pyweaver-call-nohooks"] = {"failed": f"no stub without tracing hooks: {exc!r}"}
    except Exception as exc:
        rows["pyweaver-call"] = {"failed": f"weaver.init()/get() failed: {exc!r}"}
    batch_s = seconds / (2 * BATCHES + 2)
    sizes = {name: await calibrate(target, batch_s) for name, target in targets.items()}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    order = list(targets.items())
    for _ in range(BATCHES):
        for name, target in order:
            samples[name].append(await loop(target, sizes[name]))
        order.reverse()  # no row always follows the same one
    rows.update({name: row(values) for name, values in samples.items()})
    if "pyweaver-call" in targets:
        rows["pyweaver-call-traced"] = await traced(targets["pyweaver-call"], sizes["pyweaver-call"])
    if "pyweaver-call" in samples:
        rows["pyweaver-call"]["tracing"] = tracing_state()
    empty_start = time.perf_counter_ns()
    for _ in range(1_000_000):
        pass
    rows["plain-await"]["empty_loop_ns"] = (time.perf_counter_ns() - empty_start) / 1_000_000
    return {"rows": rows}


async def another_stub(*, tracing_hooks: bool = True, speedups: bool = True) -> Any:
    """The colocated stub of Echo built like the runtime's, minus its tracing hooks or
    its C part (``speedups=False``: the pure-Python stub, but on the C module's metrics
    counter, which is slower from Python; ``--no-speedups`` measures the real thing)."""
    from pyweaver._runtime import _init
    from pyweaver._runtime._stubs import make_stub

    weavelet = _init._process_weavelet
    assert weavelet is not None
    spec = weavelet.registry.spec(Echo)
    requester = f"bench.hooks-{tracing_hooks}.speedups-{speedups}"
    stub = make_stub(spec, requester, remote=False, get_impl=weavelet.get_impl,
                     placement=weavelet.placement, tracing_hooks=tracing_hooks,
                     speedups=speedups)
    if await stub.echo(7) != 7:
        raise RuntimeError(f"the stub {requester} returned a wrong value")
    return stub


async def traced(stub: Any, n: int) -> dict[str, Any]:
    """Every call sampled: spans made and kept (not exported)."""
    from pyweaver._runtime import _tracing

    _tracing.enable_tracing(None, sample_ratio=1.0, set_global=False)
    try:
        samples = [await loop(stub, max(1000, n // 4)) for _ in range(BATCHES)]
    finally:
        _tracing.disable_tracing()
    return row(samples)


def tracing_state() -> str:
    """Recorded with the result: the target is for the runtime's default, tracing off."""
    from pyweaver._runtime._tracing import tracing_enabled

    return "on" if tracing_enabled() else "off"


def run(backend: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    import anyio

    if backend == "trio":
        return anyio.run(fn, backend="trio")
    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": backend == "asyncio+uvloop"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["asyncio", "asyncio+uvloop", "trio"], default="asyncio")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-speedups", action="store_true",
                        help="run without pyweaver's C part (read before the import)")
    args = parser.parse_args()
    result = run(args.backend, lambda: measure(args.seconds))
    result["backend"] = args.backend
    from pyweaver._runtime import _speedups

    result["c_stubs"] = _speedups.LocalMethod is not None
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
