"""The floors: a minimal hand-written length-prefixed framed-CBOR echo.

This is what a pure-Python framed protocol costs with nothing else in it: no
method dispatch, error handling, deadlines, cancellation or task per request.
pyweaver's call protocol is compared with the floor on its own backend.

Wire format (the research scripts' own, research/peerbench/):
    frame    = 4-byte big-endian body length, then a cbor2 body
    request  = [msg_id, "echo", payload]
    response = [msg_id, 0, result]

Implementations (``--impl``):
    streams   asyncio.start_server / open_connection, readexactly per frame
    protocol  asyncio.Protocol with a bytearray parse buffer (no streams layer)
    anyio     anyio socket streams + BufferedByteReceiveStream; runs on asyncio or trio

The client multiplexes every in-flight call over one connection (msg id ->
future table, one reader), as an RPC framework does; the server handles each
request inline.  Command line: see benchlib.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib

try:  # The floor is only a floor with cbor2's C extension.
    import cbor2._cbor2

    if cbor2.dumps is not cbor2._cbor2.dumps:
        raise ImportError("cbor2 is using its pure-Python fallback")
except ImportError as exc:
    raise SystemExit(f"cbor2 C extension missing: {exc}") from exc

dumps, loads = cbor2.dumps, cbor2.loads


def frame(obj: object) -> bytes:
    body: bytes = dumps(obj)
    return len(body).to_bytes(4, "big") + body


Call = Callable[[bytes], Awaitable[object]]


# ------------------------------------------------------------------ asyncio streams


async def streams_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    read_exactly = reader.readexactly
    try:
        while True:
            n = int.from_bytes(await read_exactly(4), "big")
            msg_id, _method, arg = loads(await read_exactly(n))
            writer.write(frame([msg_id, 0, arg]))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class StreamsClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[object]] = {}
        self.next_id = 0
        self.loop = asyncio.get_running_loop()

    async def read_loop(self) -> None:
        read_exactly = self.reader.readexactly
        pending = self.pending
        try:
            while True:
                n = int.from_bytes(await read_exactly(4), "big")
                msg_id, _status, result = loads(await read_exactly(n))
                future = pending.pop(msg_id)
                if not future.done():
                    future.set_result(result)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def call(self, arg: bytes) -> object:
        self.next_id += 1
        msg_id = self.next_id
        future = self.loop.create_future()
        self.pending[msg_id] = future
        self.writer.write(frame([msg_id, "echo", arg]))
        await self.writer.drain()
        return await future


# ------------------------------------------------------------------ asyncio Protocol


class FrameParser:
    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self.buffer
        buffer += data
        out = []
        pos = 0
        size = len(buffer)
        while size - pos >= 4:
            n = int.from_bytes(buffer[pos:pos + 4], "big")
            end = pos + 4 + n
            if end > size:
                break
            out.append(loads(bytes(buffer[pos + 4:end])))
            pos = end
        if pos:
            del buffer[:pos]
        return out


class ServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.parser = FrameParser()

    def data_received(self, data: bytes) -> None:
        for msg_id, _method, arg in self.parser.feed(data):
            self.transport.write(frame([msg_id, 0, arg]))


class ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[object]] = {}
        self.parser = FrameParser()
        self.next_id = 0
        self.paused = False
        self.resume_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        pending = self.pending
        for msg_id, _status, result in self.parser.feed(data):
            future = pending.pop(msg_id)
            if not future.done():
                future.set_result(result)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        for waiter in self.resume_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.resume_waiters.clear()

    async def call(self, arg: bytes) -> object:
        self.next_id += 1
        msg_id = self.next_id
        future = self.loop.create_future()
        self.pending[msg_id] = future
        self.transport.write(frame([msg_id, "echo", arg]))
        if self.paused:  # respect the transport's flow control
            waiter = self.loop.create_future()
            self.resume_waiters.append(waiter)
            await waiter
        return await future


async def asyncio_serve(impl: str, transport: str) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.AbstractServer
    if transport == "unix":
        path = benchlib.unix_socket_path()
        if impl == "streams":
            server = await asyncio.start_unix_server(streams_handle, path)
        else:
            server = await loop.create_unix_server(ServerProtocol, path)
        endpoint = f"unix:{path}"
    else:
        if impl == "streams":
            server = await asyncio.start_server(streams_handle, benchlib.HOST, 0)
        else:
            server = await loop.create_server(ServerProtocol, benchlib.HOST, 0)
        endpoint = benchlib.tcp_endpoint(server.sockets[0].getsockname()[1])
    benchlib.ready(endpoint)
    async with server:
        await server.serve_forever()


async def asyncio_connect(args: argparse.Namespace) -> None:
    kind, where, port = benchlib.parse_endpoint(args.connect)
    loop = asyncio.get_running_loop()
    data = benchlib.payload(args.payload)
    reader_task = None
    if args.impl == "streams":
        if kind == "unix":
            reader, writer = await asyncio.open_unix_connection(where)
        else:
            reader, writer = await asyncio.open_connection(where, port)
        client = StreamsClient(reader, writer)
        reader_task = asyncio.create_task(client.read_loop())
        call: Call = client.call
        close = writer.close
    else:
        if kind == "unix":
            transport, protocol = await loop.create_unix_connection(ClientProtocol, where)
        else:
            transport, protocol = await loop.create_connection(ClientProtocol, where, port)
        call = protocol.call
        close = transport.close
    try:
        if args.mode == "seq":
            result = await benchlib.measure_seq_async(call, data, args.seconds)
        else:
            result = await benchlib.measure_inflight_async(
                call, data, args.seconds, args.inflight, benchlib.AsyncioTaskGroup, asyncio.sleep)
    finally:
        close()
        if reader_task is not None:
            reader_task.cancel()
    benchlib.emit(result)


# ------------------------------------------------------------------ anyio streams


async def anyio_serve(transport: str) -> None:
    import anyio
    from anyio.abc import SocketAttribute

    listener: Any
    if transport == "unix":
        path = benchlib.unix_socket_path()
        listener = await anyio.create_unix_listener(path)
        endpoint = f"unix:{path}"
    else:
        listener = await anyio.create_tcp_listener(local_host=benchlib.HOST, local_port=0)
        endpoint = benchlib.tcp_endpoint(listener.extra(SocketAttribute.local_port))
    benchlib.ready(endpoint)
    await listener.serve(anyio_handle)


async def anyio_handle(stream: Any) -> None:
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream

    receive_exactly = BufferedByteReceiveStream(stream).receive_exactly
    send = stream.send
    try:
        while True:
            n = int.from_bytes(await receive_exactly(4), "big")
            msg_id, _method, arg = loads(await receive_exactly(n))
            await send(frame([msg_id, 0, arg]))
    except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError,
            anyio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


class AnyioClient:
    def __init__(self, stream: Any) -> None:
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream

        self.stream = stream
        self.receive_exactly = BufferedByteReceiveStream(stream).receive_exactly
        self.pending: dict[int, list[Any]] = {}
        self.next_id = 0
        # trio forbids concurrent sends on one stream, so sends take a lock.
        self.lock = anyio.Lock(fast_acquire=True)

    async def read_loop(self) -> None:
        import anyio

        receive_exactly = self.receive_exactly
        pending = self.pending
        try:
            while True:
                n = int.from_bytes(await receive_exactly(4), "big")
                msg_id, _status, result = loads(await receive_exactly(n))
                slot = pending.pop(msg_id)
                slot[1] = result
                slot[0].set()
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError,
                anyio.ClosedResourceError):
            pass

    async def call(self, arg: bytes) -> object:
        import anyio

        self.next_id += 1
        msg_id = self.next_id
        slot: list[Any] = [anyio.Event(), None]
        self.pending[msg_id] = slot
        async with self.lock:
            await self.stream.send(frame([msg_id, "echo", arg]))
        await slot[0].wait()
        return slot[1]


async def anyio_connect(args: argparse.Namespace) -> None:
    import anyio

    kind, where, port = benchlib.parse_endpoint(args.connect)
    stream: Any
    if kind == "unix":
        stream = await anyio.connect_unix(where)
    else:
        stream = await anyio.connect_tcp(where, port)
    client = AnyioClient(stream)
    data = benchlib.payload(args.payload)
    async with anyio.create_task_group() as group:
        group.start_soon(client.read_loop)
        if args.mode == "seq":
            result = await benchlib.measure_seq_async(client.call, data, args.seconds)
        else:
            result = await benchlib.measure_inflight_async(
                client.call, data, args.seconds, args.inflight, anyio.create_task_group,
                anyio.sleep)
        group.cancel_scope.cancel()
    await stream.aclose()
    benchlib.emit(result)


# ------------------------------------------------------------------ main


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", choices=["streams", "protocol", "anyio"], default="streams")


def main() -> None:
    args = benchlib.parse_args(add_extra=add_flags)
    if args.backend not in ("asyncio", "asyncio+uvloop", "trio"):
        raise SystemExit(f"unknown backend {args.backend!r}")
    if args.impl == "anyio":
        import anyio

        fn = (lambda: anyio_serve(args.transport)) if args.serve else (lambda: anyio_connect(args))
        if args.backend == "trio":
            anyio.run(fn, backend="trio")
        else:
            anyio.run(fn, backend="asyncio",
                      backend_options={"use_uvloop": args.backend == "asyncio+uvloop"})
        return
    if args.backend == "trio":
        raise SystemExit(f"--impl {args.impl} runs on asyncio only")
    coro = asyncio_serve(args.impl, args.transport) if args.serve else asyncio_connect(args)
    if args.backend == "asyncio+uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
