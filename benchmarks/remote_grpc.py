"""Peer: gRPC on asyncio (grpc.aio), unary echo through a generic handler with raw bytes.

No protobuf: the handler and the client stub pass bytes through untouched, so
this measures gRPC's transport and call machinery, not protobuf.  The 64
in-flight calls are 64 asyncio tasks sharing one channel.  The maximum message
size is raised so the 64 KiB echo fits.  Command line: see benchlib.py
(``--backend`` must be asyncio; unix transport uses a ``unix:`` target).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib

SERVICE, METHOD = "bench.Echo", "Echo"
OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def serve(transport: str) -> None:
    server = grpc.aio.server(options=OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    if transport == "unix":
        path = benchlib.unix_socket_path()
        server.add_insecure_port(f"unix:{path}")
        endpoint = f"unix:{path}"
    else:
        port = server.add_insecure_port(f"{benchlib.HOST}:0")
        endpoint = benchlib.tcp_endpoint(port)
    await server.start()
    benchlib.ready(endpoint)
    await server.wait_for_termination()


async def connect(args: Any) -> None:
    kind, where, port = benchlib.parse_endpoint(args.connect)
    target = f"unix:{where}" if kind == "unix" else f"{where}:{port}"
    data = benchlib.payload(args.payload)
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        stub = channel.unary_unary(f"/{SERVICE}/{METHOD}")  # no serializers: bytes in, bytes out

        async def call(x: bytes) -> object:
            return await stub(x)

        if args.mode == "seq":
            result = await benchlib.measure_seq_async(call, data, args.seconds)
        else:
            result = await benchlib.measure_inflight_async(
                call, data, args.seconds, args.inflight, benchlib.AsyncioTaskGroup, asyncio.sleep)
    benchlib.emit(result)


def main() -> None:
    args = benchlib.parse_args()
    if args.backend != "asyncio":
        raise SystemExit("grpc.aio runs on asyncio only")
    asyncio.run(serve(args.transport) if args.serve else connect(args))


if __name__ == "__main__":
    main()
