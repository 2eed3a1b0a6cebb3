"""ASGI: the types every ASGI piece of pyweaver shares, and serving an ASGI app on a
listening socket with hypercorn (asyncio or trio). ``/healthz`` is answered here, before
the app, for health checks; the lifespan protocol is answered for apps that ignore it;
a client that disconnects before its response is complete cancels the request's
handling (:func:`cancel_on_disconnect`), and with it the component calls made for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import sniffio

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "cancel_on_disconnect",
    "serve_asgi_socket",
]

_GRACE = 5.0  # seconds open connections get when serving is cancelled
# Request messages read ahead of the app while watching for a disconnect: enough for a
# whole small request (so a handler that never reads its body is still cancelled), few
# enough that a slow reader still pushes back on a large upload.
_READ_AHEAD = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def cancel_on_disconnect(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so an HTTP client that disconnects before its response is complete
    cancels the request's handling (and so the component calls it awaits, which the call
    protocol cancels on the server too).

    ASGI servers (hypercorn, uvicorn) only report a disconnect as an ``http.disconnect``
    message that the app must ``receive()``; a handler busy awaiting a remote call never
    does. So the request's messages are read here, in a task beside the app, and handed
    to the app in order through a small buffer (an app reading its body itself still
    reads it, with back-pressure past the buffer); an ``http.disconnect`` cancels the app
    while its response is incomplete. Once the response is complete, a disconnect cancels
    nothing (work an app does after responding, such as Starlette's background tasks,
    runs to the end), and the app's ``receive()`` reports the disconnect as usual.
    Other scopes (websocket, lifespan) pass through untouched.

    ``serve_asgi`` applies it to every app (hypercorn queues the request's messages, so
    reading them ahead costs nothing). It is not part of ``instrument_handler``: under an
    in-process transport whose ``receive`` iterates an async generator (httpx's
    ``ASGITransport``), reading ahead of an app that never reads its body would leave
    that generator half-iterated.
    """

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        response_complete = False
        to_app, from_server = anyio.create_memory_object_stream[Message](_READ_AHEAD)

        async def app_receive() -> Message:
            try:
                return await from_server.receive()
            except anyio.EndOfStream:
                return {"type": "http.disconnect"}

        async def app_send(message: Message) -> None:
            nonlocal response_complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                response_complete = True

        async def read_requests(handling: anyio.CancelScope) -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not response_complete:
                        handling.cancel()
                    to_app.close()  # the app's receive() now reports the disconnect
                    return
                await to_app.send(message)

        with to_app, from_server:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read_requests, tasks.cancel_scope)
                try:
                    await app(scope, app_receive, app_send)
                finally:
                    tasks.cancel_scope.cancel()

    return watched


def _with_healthz(app: ASGIApp) -> ASGIApp:
    async def wrapped(
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] == "http" and scope.get("path") == "/healthz":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok\n"})
            return
        if scope["type"] == "lifespan":
            await _lifespan(app, scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


async def _lifespan(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Pass the lifespan protocol to ``app``; if the app ignores it (a plain ASGI
    function that returns on unknown scopes), answer it on the app's behalf, since
    some servers (hypercorn on trio) fail to start when nobody answers."""
    answered = False

    async def tracking_send(message: Message) -> None:
        nonlocal answered
        answered = True
        await send(message)

    await app(scope, receive, tracking_send)
    if answered:
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_asgi_socket(sock: socket.socket, app: ASGIApp, *, access_log: bool = False) -> None:
    """Serve the ASGI ``app`` on the listening socket ``sock`` until cancelled (asyncio or trio).

    Uses hypercorn, which speaks HTTP/1.1, HTTP/2 (h2c) and websockets on both anyio
    backends. Cancel the calling scope to stop it.
    """
    from hypercorn.config import Config

    config = Config()
    # hypercorn takes ownership of the descriptor it is given; hand it a duplicate so
    # the caller keeps its own socket.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = "-" if access_log else None
    config.errorlog = None
    config.graceful_timeout = 1.0
    wrapped = _with_healthz(cancel_on_disconnect(app))
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]

    # hypercorn stops cleanly only through its shutdown trigger (cancelling it mid-serve
    # trips over its own task bookkeeping), so it runs shielded and is told to stop
    # when this call is cancelled; it gets GRACE seconds before it is cut off.
    stop = anyio.Event()
    shield = anyio.CancelScope(shield=True)

    async def run() -> None:
        with shield:
            await serve(wrapped, config, mode="asgi", shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            shield.deadline = anyio.current_time() + _GRACE
