"""A disconnected HTTP client cancels the remote calls made for it.

A handler served by ``weaver.serve_asgi`` on 127.0.0.1 calls a remote method that
waits forever; the client hangs up; the remote implementation must see the
cancellation (the call protocol's CANCEL), on both backends, in rpc and multi mode.
Also: streaming responses, apps reading their own body, and work after the response
are unaffected; an app wrapped in ``instrument_handler`` is cancelled too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
import httpx
import pytest

import pyweaver as weaver
from pyweaver import weavertest
from pyweaver._net import ASGIApp, Message, Receive, Scope, Send, cancel_on_disconnect
from pyweaver._runtime._listener import bind_listener

pytestmark = pytest.mark.anyio

_BOUND = 20.0  # seconds: the most any step here may take before the test fails


class Sleeper(Protocol):
    @weaver.not_retriable
    async def sleep(self) -> None: ...

    async def counts(self) -> list[int]: ...


class SleeperImpl(weaver.Implements[Sleeper]):
    async def init(self) -> None:
        self.started = 0
        self.cancelled = 0

    async def sleep(self) -> None:
        self.started += 1
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise

    async def counts(self) -> list[int]:
        """[calls of sleep started, calls of sleep that observed cancellation]"""
        return [self.started, self.cancelled]


CONFIG = """
[multi]
replicas = 1
"""


@asynccontextmanager
async def serving(asgi: ASGIApp) -> AsyncIterator[int]:
    """Serve ``asgi`` with weaver.serve_asgi on 127.0.0.1; yields the port."""
    listener = bind_listener("web", "127.0.0.1:0")
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(weaver.serve_asgi, listener, asgi)
            with anyio.fail_after(_BOUND):
                while True:
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", listener.port)
                    except OSError:
                        await anyio.sleep(0.05)
                        continue
                    await stream.aclose()
                    break
            yield listener.port
            tasks.cancel_scope.cancel()
    finally:
        await listener.aclose()


async def hang_up_during(port: int, request: bytes, until: object) -> None:
    """Send ``request``, wait for ``until()`` to be true, then close the connection."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        await stream.send(request)
        with anyio.fail_after(_BOUND):
            while not await until():  # type: ignore[operator]
                await anyio.sleep(0.02)
    finally:
        await stream.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rpc", "multi"])
async def test_a_disconnected_client_cancels_the_remote_call(mode: str) -> None:
    async with weavertest.Runner(mode, config=CONFIG) as app:
        sleeper = await app.get(Sleeper)

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            await sleeper.sleep()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"slept"})

        async def started() -> bool:
            return (await sleeper.counts())[0] >= 1

        async with serving(handler) as port:
            await hang_up_during(port, b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n", started)
            with anyio.move_on_after(_BOUND):
                while (await sleeper.counts())[1] < 1:
                    await anyio.sleep(0.02)
            assert await sleeper.counts() == [1, 1], "the remote call was not cancelled"


@pytest.mark.slow
async def test_an_instrumented_handler_is_cancelled_too() -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    instrumented = weaver.instrument_handler("disconnect-test", handler)

    async def is_started() -> bool:
        return started.is_set()

    async with serving(instrumented) as port:
        await hang_up_during(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", is_started)
        with anyio.move_on_after(_BOUND):
            await cancelled.wait()
        assert cancelled.is_set()


async def test_the_app_reads_its_body_and_streams_its_response() -> None:
    # Body read in pieces by the app, response streamed: untouched by the watcher.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (body[:3], body[3:], b"!"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"cd", b"ef"):
            yield piece

    transport = httpx.ASGITransport(app=cancel_on_disconnect(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/", content=chunks())
    assert response.text == "abcdef!"


async def test_work_after_the_response_is_not_cancelled_and_sees_the_disconnect() -> None:
    after: list[Message] = []
    finished = anyio.Event()
    client_gone = anyio.Event()
    messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await client_gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            client_gone.set()  # the client hangs up once it has the whole response

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await anyio.sleep(0.05)  # "background" work after the response
        after.append(await receive())
        finished.set()

    with anyio.fail_after(_BOUND):
        await cancel_on_disconnect(app)({"type": "http"}, receive, send)
    assert finished.is_set()
    assert after == [{"type": "http.disconnect"}]


async def test_a_disconnect_before_the_response_cancels_and_is_reported() -> None:
    cancelled = anyio.Event()
    messages: list[Message] = [{"type": "http.disconnect"}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with anyio.fail_after(_BOUND):
        await cancel_on_disconnect(app)({"type": "http"}, receive, send)
    assert cancelled.is_set()
