"""Raw TCP round-trip latency: a minimal asyncio echo, no Ray, no pyweaver.

    python -m tests.cluster.tcp_latency server ADDRESS        # prints `PORT <n>`, serves one client
    python -m tests.cluster.tcp_latency client ADDRESS PORT COUNT   # prints one JSON line
    python -m tests.cluster.tcp_latency compare [COUNT [REPEAT]]    # as root: makes 2 netns
        # hosts, alternates host-to-host and loopback runs, prints each and the medians

The client sends 64-byte messages one at a time (after 200 warm-up round trips) and prints
percentiles in microseconds. `measure()` runs both inside netns hosts; the tests use it to
compare two hosts on the bridge with loopback inside one host.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cluster import netns
from tests.cluster.netns import Host, Network

MESSAGE = b"x" * 64
WARMUP = 200
TIMEOUT_S = 60.0
MODULE = "tests.cluster.tcp_latency"  # not __name__, which is "__main__" under -m
REPO_ROOT = Path(__file__).resolve().parents[2]  # so `-m tests.cluster...` imports


async def _serve(address: str) -> None:
    done = asyncio.Event()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(echo, address, 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.wait_for(done.wait(), TIMEOUT_S)


async def _client(address: str, port: int, count: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 10)
    samples: list[float] = []
    try:
        for index in range(WARMUP + count):
            began = loop.time()
            writer.write(MESSAGE)
            await reader.readexactly(len(MESSAGE))
            if index >= WARMUP:
                samples.append(loop.time() - began)
    finally:
        writer.close()
    samples.sort()
    return {
        "count": count,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p90_us": samples[int(len(samples) * 0.9)] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
    }


def measure(server_host: Host, client_host: Host, address: str, count: int) -> dict[str, Any]:
    """Serve on `address` inside `server_host`, run the client inside `client_host`."""
    server = subprocess.Popen(
        Network.exec_argv(server_host, [sys.executable, "-m", MODULE, "server", address]),
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().split()
        if first[:1] != ["PORT"]:
            raise RuntimeError(f"echo server did not start: {first!r}")
        client = subprocess.run(
            Network.exec_argv(
                client_host,
                [sys.executable, "-m", MODULE, "client", address, first[1], str(count)],
            ),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=TIMEOUT_S,
            check=True,
        )
        result: dict[str, Any] = json.loads(client.stdout)
        return result
    finally:
        server.kill()  # by PID; the server only ever serves one client anyway
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def compare(count: int, repeat: int) -> dict[str, Any]:
    """Host-to-host vs loopback p50, `repeat` alternating runs of `count` round trips each."""
    netns.cleanup_leftovers()
    runs: dict[str, list[float]] = {"between_hosts_p50_us": [], "loopback_p50_us": []}
    with Network.create(2) as network:
        first, second = network.hosts
        for _ in range(repeat):
            between = measure(second, first, second.address, count)
            loopback = measure(first, first, "127.0.0.1", count)
            print(json.dumps({"between_hosts": between, "loopback": loopback}), flush=True)
            runs["between_hosts_p50_us"].append(between["p50_us"])
            runs["loopback_p50_us"].append(loopback["p50_us"])
    return {name: statistics.median(values) for name, values in runs.items()}


def main(argv: list[str]) -> None:
    if argv[:1] == ["compare"] and len(argv) <= 3:
        count = int(argv[1]) if len(argv) > 1 else 2000
        repeat = int(argv[2]) if len(argv) > 2 else 5
        print(json.dumps({"median_of_runs": compare(count, repeat)}))
    elif argv[:1] == ["server"] and len(argv) == 2:
        asyncio.run(_serve(argv[1]))
    elif argv[:1] == ["client"] and len(argv) == 4:
        print(json.dumps(asyncio.run(_client(argv[1], int(argv[2]), int(argv[3])))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
