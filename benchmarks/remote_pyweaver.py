"""pyweaver's call protocol (``pyweaver.call``) as a remote echo, in the runner's
variant convention (see benchlib.py).

    --serve   --transport tcp|unix --backend asyncio|asyncio+uvloop|trio [--driver D]
              prints ``READY <endpoint>`` (a pyweaver endpoint: tcp://127.0.0.1:PORT or
              unix:///PATH), then echoes until terminated.
    --connect ENDPOINT --backend B --mode seq|inflight --payload 16|65536 --seconds N
              prints one JSON line: p50/p99 µs (seq) or calls/s (inflight: 64 tasks
              sharing one pyweaver.call.Client).

``--driver`` picks the I/O driver on asyncio: ``auto`` (the asyncio.Protocol driver),
or ``streams`` (the anyio-streams driver trio uses), to compare the two. ``--profile
FILE`` writes a cProfile of the client or server to FILE.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyio
import benchlib

from pyweaver import call

DEPLOYMENT = "bench"
FINGERPRINT = b"remote_pyweaver"
ECHO = call.method_key("bench.Echo", "echo")
MAX_FRAME = 16 << 20


async def echo(payload: bytes) -> bytes:
    return payload


def pyweaver_endpoint(endpoint: str) -> str:
    """Accept the runner's ``tcp:HOST:PORT`` / ``unix:PATH`` as well as our own form."""
    if "://" in endpoint:
        return endpoint
    kind, host, port = benchlib.parse_endpoint(endpoint)
    return f"unix://{host}" if kind == "unix" else f"tcp://{host}:{port}"


async def serve(args: argparse.Namespace) -> None:
    address = (
        f"unix://{benchlib.unix_socket_path()}"
        if args.transport == "unix"
        else f"tcp://{benchlib.HOST}:0"
    )
    stop = anyio.Event()
    async with call.serve(
        address,
        {ECHO: echo},
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        max_frame=MAX_FRAME,
        driver=args.driver,
        shutdown_grace=0.5,
    ) as server:
        benchlib.ready(server.address)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                break


async def connect(args: argparse.Namespace) -> None:
    data = benchlib.payload(args.payload)
    async with call.Client(
        [pyweaver_endpoint(args.connect)],
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        max_frame=MAX_FRAME,
        driver=args.driver,
    ) as client:
        with anyio.fail_after(10):
            await client.wait_ready()
        client_call = client.call

        async def one(payload: bytes) -> bytes:
            return await client_call(ECHO, payload)

        if args.mode == "seq":
            result = await benchlib.measure_seq_async(one, data, args.seconds)
        else:
            result = await benchlib.measure_inflight_async(
                one, data, args.seconds, args.inflight, anyio.create_task_group, anyio.sleep
            )
    result.update(backend=args.backend, driver=args.driver, transport=args.connect.split(":")[0])
    benchlib.emit(result)


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driver", choices=["auto", "streams"], default="auto")
    parser.add_argument("--profile", metavar="FILE", default="")


def main() -> None:
    args = benchlib.parse_args(add_extra=add_flags)
    backend_options: dict[str, Any] = {}
    if args.backend == "trio":
        backend = "trio"
    elif args.backend == "asyncio":
        backend = "asyncio"
    elif args.backend == "asyncio+uvloop":
        backend = "asyncio"
        backend_options = {"use_uvloop": True}
    else:
        raise SystemExit(f"unknown backend {args.backend!r}")
    function = serve if args.serve else connect
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            anyio.run(function, args, backend=backend, backend_options=backend_options)
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        anyio.run(function, args, backend=backend, backend_options=backend_options)


if __name__ == "__main__":
    main()
