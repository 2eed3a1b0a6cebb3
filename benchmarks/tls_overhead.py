"""What mutual TLS costs a call: p50 latency and throughput, plain vs TLS, Unix vs TCP.

    .venv/bin/python benchmarks/tls_overhead.py [--calls 5000] [--concurrency 64]

One call server and one client in this process (asyncio, the Protocol driver), a
64-byte echo; the TLS runs use a deployment's CA and group certificates as a deployer
makes them (EC P-256, TLS 1.3) and authorization by identity (one frozenset lookup per
request). Prints one line per (transport, TLS) and the TLS/plain ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from pyweaver import call
from pyweaver.deployers._ca import DeploymentCA

KEY = call.method_key("bench.Echo", "echo")
PAYLOAD = b"x" * 64


async def echo(payload: bytes) -> bytes:
    return payload


async def measure(address: str, tls: Any, calls: int, concurrency: int) -> tuple[float, float]:
    server_options: dict[str, Any] = {}
    client_options: dict[str, Any] = {}
    if tls is not None:
        server_options = {
            "ssl_context": tls.groups["server"].server_context(),
            "authorize": lambda identity: frozenset({KEY}),
        }
        client_options = {"ssl_context": tls.groups["client"].client_context()}
    async with (
        call.serve(
            address, {KEY: echo}, deployment_id="b", fingerprint=b"f", **server_options
        ) as server,
        call.Client(
            [server.address], deployment_id="b", fingerprint=b"f", **client_options
        ) as client,
    ):
        await client.wait_ready()
        for _ in range(200):  # warm up
            await client.call(KEY, PAYLOAD)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            await client.call(KEY, PAYLOAD)
            latencies.append(time.perf_counter() - start)
        p50 = statistics.median(latencies)

        per_task = calls // concurrency

        async def worker() -> None:
            for _ in range(per_task):
                await client.call(KEY, PAYLOAD)

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)
        throughput = per_task * concurrency / (time.perf_counter() - start)
    return p50, throughput


async def main(calls: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pwtls-") as directory:
        tls = DeploymentCA.create("b").write_files(Path(directory) / "tls", ["server", "client"])
        results: dict[tuple[str, bool], tuple[float, float]] = {}
        for transport in ("unix", "tcp"):
            for secure in (False, True):
                address = (
                    f"unix://{directory}/{int(secure)}.sock"
                    if transport == "unix"
                    else "tcp://127.0.0.1:0"
                )
                p50, rate = await measure(address, tls if secure else None, calls, concurrency)
                results[transport, secure] = p50, rate
                print(
                    f"{transport:4} {'mtls ' if secure else 'plain'}  p50 {p50 * 1e6:7.1f} µs"
                    f"   throughput ({concurrency} in flight) {rate:9.0f} calls/s"
                )
        for transport in ("unix", "tcp"):
            (plain_p50, plain_rate), (tls_p50, tls_rate) = (
                results[transport, False],
                results[transport, True],
            )
            print(
                f"{transport:4} TLS/plain: p50 x{tls_p50 / plain_p50:.2f}, "
                f"throughput x{tls_rate / plain_rate:.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.concurrency)
