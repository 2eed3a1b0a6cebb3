"""A component echo deployed in two processes: what ``remote_component.py`` measures.

``main`` runs in one weavelet and calls ``Echo`` (its own colocation group, one replica,
in a second process) through the stub ``weaver.get`` returns: the multi deployer's
transport between weavelets (the call protocol over a Unix socket, the routing
balancer, the codec and the stubs on both sides). It runs one load shape of
``benchlib`` per payload and writes the results as one JSON object to the file named
by ``BENCH_OUT``.

Environment: ``BENCH_BACKEND`` (asyncio | asyncio+uvloop | trio; both processes run
this script, so both use it), ``BENCH_SECONDS``, ``BENCH_OUT``, ``BENCH_MEASURE``
(comma-separated subset of seq/16, inflight/16, inflight/65536; default all; a repeated
one is measured again and keyed MEASUREMENT#2, #3, ...), ``BENCH_PIN``
(cross: main on CPU 0, Echo on CPU 1), ``BENCH_PROFILE`` (see below).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Protocol

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import anyio
import benchlib

import pyweaver as weaver
from pyweaver import call

RAW_KEY = call.method_key("bench.Raw", "echo")


class Echo(Protocol):
    async def echo(self, data: bytes) -> bytes: ...

    async def serve_raw(self, path: str, seconds: float) -> None: ...


class EchoImpl(weaver.Implements[Echo]):
    async def init(self) -> None:
        _pin(1)
        if _profiler is not None:
            _profiler.enable()

    async def echo(self, data: bytes) -> bytes:
        return data

    async def serve_raw(self, path: str, seconds: float) -> None:
        """Serve a raw pyweaver.call echo on ``path`` for ``seconds`` (the control
        variant ``@raw``: the protocol alone between the same two processes)."""
        async def echo(payload: bytes) -> bytes:
            return payload

        async with call.serve(f"unix://{path}", {RAW_KEY: echo}, deployment_id="raw",
                              fingerprint=b"raw", max_frame=1 << 24):
            await anyio.sleep(seconds)

    async def shutdown(self) -> None:
        if _profiler is not None:
            _profiler.disable()
            _profiler.dump_stats(os.environ["BENCH_PROFILE"] + ".callee")


# BENCH_PROFILE=PREFIX: cProfile both processes (PREFIX.caller: the measurement loop;
# PREFIX.callee: the Echo process from import to shutdown). For benchmarks/breakdown.py.
_profiler: Any = None
if os.environ.get("BENCH_PROFILE"):
    import cProfile

    _profiler = cProfile.Profile()


MEASUREMENTS = ("seq/16", "inflight/16", "inflight/65536")


def _pin(cpu: int) -> None:
    """BENCH_PIN=cross: main on CPU 0, Echo on CPU 1 (as run.py --pin cross does for the
    raw protocol's client and server)."""
    if os.environ.get("BENCH_PIN") == "cross":
        os.sched_setaffinity(0, {cpu})


async def measure(echo: Any, measurement: str, seconds: float) -> dict[str, Any]:
    """``MODE/SIZE`` through the stub; ``MODE/SIZE@client``: the same bytes through the
    weavelet's call client for Echo's group (no stub, codec or metrics);
    ``MODE/SIZE@raw``: a plain pyweaver.call client and server between the same two
    processes (see ``serve_raw``)."""
    shape, _, variant = measurement.partition("@")
    mode, _, size = shape.partition("/")
    data = benchlib.payload(int(size))

    async def run(call_one: Any) -> dict[str, Any]:
        if mode == "seq":
            return await benchlib.measure_seq_async(call_one, data, seconds)
        return await benchlib.measure_inflight_async(
            call_one, data, seconds, benchlib.IN_FLIGHT, anyio.create_task_group, anyio.sleep
        )

    if not variant:
        return await run(echo.echo)
    from pyweaver._runtime._remote import _main_agent

    spec = _main_agent.registry.spec(Echo)  # type: ignore[union-attr]
    if variant == "client":
        client = await _main_agent.client(spec.name)  # type: ignore[union-attr]
        codec = spec.methods["echo"].codec
        key = spec.methods["echo"].key
        encoded = codec.encode_args((data,))
        expected = codec.encode_result(data)

        async def via_client(payload: bytes) -> bytes:
            reply = await client.call(key, encoded)
            return payload if reply == expected else reply

        return await run(via_client)
    path = os.path.join(os.path.dirname(os.environ["BENCH_OUT"]), "raw.sock")
    result: dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(echo.serve_raw, path, 4 * seconds + 5)
        while not os.path.exists(path):
            await anyio.sleep(0.01)
        async with call.Client([f"unix://{path}"], deployment_id="raw", fingerprint=b"raw",
                               max_frame=1 << 24) as raw:
            await raw.wait_ready()

            async def via_raw(payload: bytes) -> bytes:
                return await raw.call(RAW_KEY, payload)

            result = await run(via_raw)
        group.cancel_scope.cancel()
    return result


async def main() -> None:
    root = await weaver.init()
    _pin(0)
    echo = await weaver.get(Echo, root)  # type: ignore[type-abstract]
    seconds = float(os.environ.get("BENCH_SECONDS", "2"))
    wanted = os.environ.get("BENCH_MEASURE") or ",".join(MEASUREMENTS)
    results: dict[str, Any] = {}
    call = echo.echo
    if _profiler is not None:
        await call(b"warm")
        _profiler.enable()
    for measurement in wanted.split(","):
        key, repeat = measurement, 1
        while key in results:  # a repeated measurement: MEASUREMENT#2, #3, ...
            repeat += 1
            key = f"{measurement}#{repeat}"
        results[key] = await measure(echo, measurement, seconds)
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(os.environ["BENCH_PROFILE"] + ".caller")
    import asyncio

    import sniffio
    if sniffio.current_async_library() == "asyncio":
        results["loop"] = type(asyncio.get_running_loop()).__module__
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump(results, out)


if __name__ == "__main__":
    backend = os.environ.get("BENCH_BACKEND", "asyncio")
    if backend == "trio":
        anyio.run(main, backend="trio")
    else:
        anyio.run(main, backend="asyncio",
                  backend_options={"use_uvloop": backend == "asyncio+uvloop"})
