"""Tests for pyweaver.deployers._proxy: the L4 listener proxy."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from pyweaver.deployers._proxy import (
    ListenerInUseError,
    ProxyError,
    TcpProxy,
    format_address,
    parse_address,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on a free loopback port, for the span of the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def guarded(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await handler(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        yield f"127.0.0.1:{port}"
        tg.cancel_scope.cancel()


def echo(tag: bytes = b"") -> Handler:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        if tag:
            await stream.send(tag)
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
            await stream.send(data)

    return handle


async def receive_all(stream: anyio.abc.SocketStream) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except anyio.EndOfStream:
            return b"".join(chunks)


async def dial(address: str) -> anyio.abc.SocketStream:
    host, port = parse_address(address)
    return await anyio.connect_tcp(host, port)


async def tag_of(address: str) -> bytes:
    """Which backend answers a new connection (its 2-byte tag)."""
    async with await dial(address) as stream:
        data = b""
        with anyio.fail_after(10):
            while len(data) < 2:
                data += await stream.receive()
        return data[:2]


def free_port_nobody_listens_on() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_addresses() -> None:
    assert parse_address("") == ("127.0.0.1", 0)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("localhost:9000") == ("localhost", 9000)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert format_address("::1", 80) == "[::1]:80"
    assert format_address("127.0.0.1", 80) == "127.0.0.1:80"
    for bad in ("nohost", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="invalid address"):
            parse_address(bad)


async def test_echo_with_half_close() -> None:
    async with server(echo()) as backend, TcpProxy(":0", [backend]) as proxy:
        assert proxy.address.startswith("127.0.0.1:")
        payload = os.urandom(300_000)  # junk, NULs and all, larger than one chunk
        async with await dial(proxy.address) as stream, anyio.create_task_group() as tg:

            async def send() -> None:
                await stream.send(payload)
                await stream.send_eof()

            tg.start_soon(send)
            with anyio.fail_after(20):
                assert await receive_all(stream) == payload
        assert proxy.stats()[backend].total == 1


async def test_connections_spread_over_backends() -> None:
    async with (
        server(echo(b"A1")) as a,
        server(echo(b"B2")) as b,
        TcpProxy("127.0.0.1:0", [a, b]) as proxy,
    ):
        # Connections held open: least-connections keeps them even.
        streams = [await dial(proxy.address) for _ in range(6)]
        try:
            tags = []
            for stream in streams:
                with anyio.fail_after(10):
                    tags.append(await stream.receive(2))
            assert sorted(tags) == [b"A1"] * 3 + [b"B2"] * 3
            assert proxy.stats()[a].active == 3 and proxy.stats()[b].active == 3
        finally:
            for stream in streams:
                await stream.aclose()
        # One after the other: round robin among equally idle backends.
        tags = [await tag_of(proxy.address) for _ in range(6)]
        assert tags.count(b"A1") == 3 and tags.count(b"B2") == 3


async def test_backend_removal_and_updates() -> None:
    async with (
        server(echo(b"A1")) as a,
        server(echo(b"B2")) as b,
        TcpProxy(":0", name="web") as proxy,
    ):
        proxy.add_backend(a, owner="replica-a")
        proxy.add_backend(parse_address(b), owner="replica-b")
        assert sorted(proxy.backends) == sorted([a, b])
        kept = await dial(proxy.address)
        async with kept:
            first = await kept.receive(2)
            proxy.remove_backends_of("replica-a" if first == b"A1" else "replica-b")
            assert len(proxy.backends) == 1
            others = {await tag_of(proxy.address) for _ in range(4)}
            assert others == {b"B2" if first == b"A1" else b"A1"}
            # The connection opened before the removal still works.
            await kept.send(b"still here")
            with anyio.fail_after(10):
                assert await kept.receive() == b"still here"
        proxy.remove_backend(b)
        proxy.remove_backend(a)
        proxy.set_backends([a])
        assert {await tag_of(proxy.address) for _ in range(3)} == {b"A1"}


async def test_backends_from_a_callable() -> None:
    current: list[str] = []
    async with server(echo(b"A1")) as a, TcpProxy(":0", lambda: current) as proxy:
        current.append(a)
        assert await tag_of(proxy.address) == b"A1"
        assert proxy.backends == [a]


async def test_refusing_backend_is_skipped() -> None:
    dead = f"127.0.0.1:{free_port_nobody_listens_on()}"
    async with server(echo(b"A1")) as a, TcpProxy(":0", [dead, a]) as proxy:
        assert {await tag_of(proxy.address) for _ in range(4)} == {b"A1"}
        stats = proxy.stats()
        assert stats[dead].failures >= 1 and stats[dead].total == 0
        assert stats[a].total == 4


async def test_no_backend_closes_the_client() -> None:
    dead = f"127.0.0.1:{free_port_nobody_listens_on()}"
    async with TcpProxy(":0", [dead]) as proxy:
        for _ in range(2):
            async with await dial(proxy.address) as stream:
                with anyio.fail_after(10):
                    assert await receive_all(stream) == b""
    async with TcpProxy(":0") as proxy, await dial(proxy.address) as stream:
        with anyio.fail_after(10):
            assert await receive_all(stream) == b""


async def test_address_in_use_is_a_clear_error() -> None:
    async with server(echo()) as taken:
        with pytest.raises(ListenerInUseError) as info:
            async with TcpProxy(taken):
                pytest.fail("should not listen")
    assert str(info.value) == f"listener address {taken} is already in use"
    assert isinstance(info.value, OSError) and isinstance(info.value, ProxyError)
    assert info.value.address == taken


async def test_other_listen_errors() -> None:
    with pytest.raises(ProxyError, match=r"listener 'web' cannot listen on 192\.0\.2\.1:0"):
        async with TcpProxy("192.0.2.1:0", name="web"):  # TEST-NET: not ours, bind fails
            pytest.fail("should not listen")


async def test_resets_and_junk_do_not_break_it() -> None:
    async with server(echo()) as backend, TcpProxy(":0", [backend]) as proxy:
        for _ in range(3):
            sock = socket.create_connection(parse_address(proxy.address))
            sock.sendall(b"\x00\xff junk \r\n\r\n" * 100)
            # RST instead of FIN: SO_LINGER with a zero timeout.
            linger_zero = b"\x01\x00\x00\x00\x00\x00\x00\x00"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
            sock.close()
        async with await dial(proxy.address) as stream:
            await stream.send(b"ping")
            with anyio.fail_after(10):
                assert await stream.receive() == b"ping"


async def test_aclose_from_another_task() -> None:
    async with server(echo()) as backend:
        async with anyio.create_task_group() as tg:
            proxies: list[TcpProxy] = []

            async def run(*, task_status: anyio.abc.TaskStatus[TcpProxy]) -> None:
                async with TcpProxy(":0", [backend]) as proxy:
                    task_status.started(proxy)
                    await anyio.sleep_forever()

            proxies.append(await tg.start(run))
            stream = await dial(proxies[0].address)
            with anyio.fail_after(10):
                await proxies[0].aclose()
                assert await receive_all(stream) == b""  # open connections are closed
            await stream.aclose()
            await proxies[0].aclose()  # twice is fine
        with pytest.raises(OSError):
            await dial(proxies[0].address)


async def http_server(stream: anyio.abc.SocketStream) -> None:
    """A trivial HTTP/1.1 server: keep-alive, answers with the request line."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            try:
                buffer += await stream.receive()
            except anyio.EndOfStream:
                return
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        request_line = head.split(b"\r\n", 1)[0]
        body = b"you sent " + request_line
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )


async def test_http_through_the_proxy() -> None:
    async with (
        server(http_server) as backend,
        TcpProxy(":0", [backend]) as proxy,
        httpx.AsyncClient(base_url=f"http://{proxy.address}") as client,
    ):
        for i in range(3):
            response = await client.get(f"/hello/{i}")
            assert response.status_code == 200
            assert response.text == f"you sent GET /hello/{i} HTTP/1.1"
        assert proxy.stats()[backend].total == 1  # one kept-alive connection


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"{scope['http_version']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_http2_cleartext_through_the_proxy(anyio_backend: str) -> None:
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.bind = [f"127.0.0.1:{port}"]
    stop = anyio.Event()
    if anyio_backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(asgi_app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        async with TcpProxy(":0", [f"127.0.0.1:{port}"]) as proxy:
            async with httpx.AsyncClient(http1=False, http2=True) as client:
                with anyio.fail_after(20):
                    while True:  # hypercorn binds in the background
                        try:
                            response = await client.get(f"http://{proxy.address}/h2")
                            break
                        except httpx.TransportError:
                            await anyio.sleep(0.05)
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            assert response.text == "2 /h2"
        stop.set()


# ------------------------------------------------------------------ bounded descriptors


async def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_connections_beyond_the_cap_are_refused() -> None:
    async with server(echo()) as backend, TcpProxy(":0", [backend], max_connections=5) as proxy:
        streams = [await dial(proxy.address) for _ in range(20)]
        try:
            with anyio.fail_after(10):
                while proxy.connections + proxy.refused_connections < 20:
                    await anyio.sleep(0.01)
            assert proxy.connections == 5
            assert proxy.refused_connections == 15
            closed = 0
            for stream in streams:
                with anyio.move_on_after(1):
                    try:
                        await stream.send(b"x")
                        assert await stream.receive() == b"x"
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        closed += 1
            assert closed == 15
        finally:
            for stream in streams:
                await stream.aclose()


async def test_an_idle_flood_is_closed_and_gives_its_descriptors_back() -> None:
    async with (
        server(echo()) as backend,
        TcpProxy(":0", [backend], idle_timeout=0.3, max_connections=1000) as proxy,
    ):
        before = await open_fds()
        streams = [await dial(proxy.address) for _ in range(100)]
        try:
            with anyio.fail_after(10):
                for stream in streams:
                    assert await receive_all(stream) == b""  # closed by the proxy
            with anyio.fail_after(10):
                while proxy.connections:
                    await anyio.sleep(0.01)
        finally:
            for stream in streams:
                await stream.aclose()
        assert proxy.stats()[backend].total == 100  # each was proxied, then timed out
        assert await open_fds() < before + 20  # the 200 descriptors of the flood are back


async def test_traffic_keeps_a_connection_open_past_the_idle_timeout() -> None:
    async with (
        server(echo()) as backend,
        TcpProxy(":0", [backend], idle_timeout=0.3) as proxy,
        await dial(proxy.address) as stream,
    ):
        for _ in range(6):
            await anyio.sleep(0.1)
            await stream.send(b"ping")
            with anyio.fail_after(5):
                assert await stream.receive() == b"ping"


async def test_the_client_side_closes_after_the_backend_closed() -> None:
    async def say_bye(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"bye")

    async with (
        server(say_bye) as backend,
        TcpProxy(":0", [backend], half_close_timeout=0.2, idle_timeout=None) as proxy,
        await dial(proxy.address) as stream,
    ):
        with anyio.fail_after(10):
            assert await receive_all(stream) == b"bye"
            # This client never closes its side; the proxy lets go of it anyway.
            while proxy.connections:
                await anyio.sleep(0.01)


async def test_a_held_owner_gets_no_new_connections_until_released() -> None:
    async with server(echo(b"A0")) as a, server(echo(b"B0")) as b, TcpProxy(":0") as proxy:
        proxy.add_backend(a, owner="a")
        proxy.add_backend(b, owner="b")
        proxy.hold_owner("a")
        assert {await tag_of(proxy.address) for _ in range(4)} == {b"B0"}
        assert proxy.backends == [b]
        proxy.hold_owner("a", held=False)
        assert {await tag_of(proxy.address) for _ in range(4)} == {b"A0", b"B0"}
