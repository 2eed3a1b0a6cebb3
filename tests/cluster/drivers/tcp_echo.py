"""Actors on two hosts talk plain TCP to each other, not through Ray.

An echo server actor on SERVER_HOST listens on its host's address; a client actor on
CLIENT_HOST connects to it and does COUNT round trips of 64 bytes. This is how pyweaver
weavelets placed by Ray call each other. Result `echo`: both actors' node IPs, the peer
addresses the server saw, and the client's round-trip percentiles (microseconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import ray

from tests.cluster.drivers._driver import connect, emit

MESSAGE = b"x" * 64


@ray.remote(num_cpus=0)
class EchoServer:
    def __init__(self) -> None:
        self.peers: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        host_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.server = await asyncio.start_server(self._echo, host_ip, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return host_ip, port

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def seen_peers(self) -> list[str]:
        return self.peers


@ray.remote(num_cpus=0)
class EchoClient:
    async def round_trips(self, host: str, port: int, count: int) -> dict[str, Any]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        samples: list[float] = []
        try:
            for _ in range(count):
                began = time.perf_counter()
                writer.write(MESSAGE)
                await reader.readexactly(len(MESSAGE))
                samples.append(time.perf_counter() - began)
        finally:
            writer.close()
        samples.sort()
        return {
            "client_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "count": count,
            "p50_us": samples[len(samples) // 2] * 1e6,
            "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        }


def main() -> None:
    server_host, client_host, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    connect()
    server = EchoServer.options(resources={server_host: 1}).remote()  # type: ignore[attr-defined]
    client = EchoClient.options(resources={client_host: 1}).remote()  # type: ignore[attr-defined]
    host, port = ray.get(server.start.remote(), timeout=60)
    stats = ray.get(client.round_trips.remote(host, port, count), timeout=60)
    emit(
        "echo",
        server_address=[host, port],
        peers=ray.get(server.seen_peers.remote(), timeout=10),
        **stats,
    )
    ray.kill(server)
    ray.kill(client)


if __name__ == "__main__":
    main()
