"""Listeners: address parsing, binding, and serve_asgi on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx
import pytest

import pyweaver as weaver
from pyweaver._net import parse_address
from pyweaver._runtime._listener import bind_listener

pytestmark = pytest.mark.anyio


def test_parse_address() -> None:
    assert parse_address("") == ("127.0.0.1", 0)
    assert parse_address("localhost:9000") == ("127.0.0.1", 9000)
    assert parse_address(":81") == ("127.0.0.1", 81)
    assert parse_address("[::1]:82") == ("::1", 82)
    with pytest.raises(weaver.ConfigError, match="'nonsense'"):
        parse_address("nonsense")
    with pytest.raises(weaver.ConfigError, match="port 'x'"):
        parse_address("host:x")
    with pytest.raises(weaver.ConfigError, match="out of range"):
        parse_address("host:70000")


async def test_a_taken_address_is_a_clear_error() -> None:
    first = bind_listener("a", "127.0.0.1:0")
    try:
        with pytest.raises(OSError, match=f"listener 'b': cannot bind '{first.address}'"):
            bind_listener("b", first.address)
    finally:
        await first.aclose()


async def test_serve_asgi_serves_and_reserves_healthz() -> None:
    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    listener = bind_listener("web", "")
    assert str(listener) == listener.address and listener.port > 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(weaver.serve_asgi, listener, app)
        async with httpx.AsyncClient(base_url=f"http://{listener}") as client:
            for _ in range(100):
                try:
                    response = await client.get("/some/path")
                    break
                except httpx.ConnectError:
                    await anyio.sleep(0.05)
            assert response.text == "/some/path"
            health = await client.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
        tg.cancel_scope.cancel()
    await listener.aclose()


async def test_listener_is_an_anyio_listener() -> None:
    listener = bind_listener("raw", "")

    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        async with await anyio.connect_tcp("127.0.0.1", listener.port) as client:
            await client.send(b"ping")
            assert await client.receive() == b"ping"
        tg.cancel_scope.cancel()
    await listener.aclose()
