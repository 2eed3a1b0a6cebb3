"""Network listeners and ``serve_asgi``.

A :class:`Listener` owns a bound, listening TCP socket. The deployer decides the
address (``[single]``/``[multi]`` ``listeners.NAME.address`` in weaver.toml, else
``ListenerOptions.local_address``, else an ephemeral port on localhost) and, when it
runs a proxy in front of the replicas, the address clients dial (``proxy_addr``).

A listener is usable three ways: as an anyio listener (``await listener.serve(handler)``),
as a plain bound socket (``listener.socket``) for any server that accepts one, and with
``await weaver.serve_asgi(listener, app)``, which serves an ASGI app on it with hypercorn
on asyncio or trio. ``/healthz`` is reserved: it answers ``200 ok`` for health checks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.abc
import attrs
import sniffio

from ._errors import ConfigError

_GRACE = 5.0  # seconds serve_asgi gives open connections when it is cancelled

__all__ = [
    "Listener",
    "ListenerOptions",
    "bind_listener",
    "format_address",
    "parse_address",
    "serve_asgi",
]

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@attrs.frozen(kw_only=True)
class ListenerOptions:
    """How to bind a listener when the deployer has no address configured for it.

    Attributes:
        local_address: ``"host:port"``; ``""`` means ``localhost:0`` (any free port).
    """

    local_address: str = ""


def parse_address(address: str, *, what: str = "listener address") -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"``, ``":port"`` or ``""`` -> (host, port)."""
    if not address:
        return "127.0.0.1", 0
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ConfigError(f"{what} {address!r}: expected host:port")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {address!r}: port {port} is out of range")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listener(name: str, address: str, *, proxy_addr: str = "") -> Listener:
    """Bind and listen on ``address`` now, so the port is known and held."""
    host, port = parse_address(address, what=f"listener {name!r} address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"listener {name!r}: cannot bind {address!r}: {exc.strerror}"
        ) from exc
    sock.setblocking(False)
    return Listener(name, sock, proxy_addr=proxy_addr)


class Listener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """A named network listener (see the module docstring)."""

    def __init__(self, name: str, sock: socket.socket, *, proxy_addr: str = "") -> None:
        self.name = name
        self.socket = sock
        host, port = sock.getsockname()[:2]
        self.address = format_address(host, port)
        self.proxy_addr = proxy_addr
        self._anyio_listener: anyio.abc.SocketListener | None = None

    def __str__(self) -> str:
        return self.proxy_addr or self.address

    def __repr__(self) -> str:
        proxy = f", proxy_addr={self.proxy_addr!r}" if self.proxy_addr else ""
        return f"Listener({self.name!r}, address={self.address!r}{proxy})"

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    async def _listener(self) -> anyio.abc.SocketListener:
        if self._anyio_listener is None:
            self._anyio_listener = await anyio.abc.SocketListener.from_socket(self.socket)
        return self._anyio_listener

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        await (await self._listener()).serve(handler, task_group)

    async def aclose(self) -> None:
        if self._anyio_listener is not None:
            await self._anyio_listener.aclose()
        else:
            self.socket.close()

    @property
    def extra_attributes(self) -> Any:
        return {}


def _with_healthz(app: ASGIApp) -> ASGIApp:
    async def wrapped(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
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
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Pass the lifespan protocol to ``app``; if the app ignores it (a plain ASGI
    function that returns on unknown scopes), answer it on the app's behalf, since
    some servers (hypercorn on trio) fail to start when nobody answers."""
    answered = False

    async def tracking_send(message: MutableMapping[str, Any]) -> None:
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


async def serve_asgi(listener: Listener, app: ASGIApp, *, access_log: bool = False) -> None:
    """Serve the ASGI ``app`` on ``listener`` until cancelled (asyncio or trio).

    Uses hypercorn, which speaks HTTP/1.1, HTTP/2 (h2c) and websockets on both anyio
    backends. Cancel the calling scope to stop it.
    """
    from hypercorn.config import Config

    config = Config()
    # hypercorn takes ownership of the descriptor it is given; hand it a duplicate so
    # the Listener keeps its own socket.
    config.bind = [f"fd://{os.dup(listener.socket.fileno())}"]
    config.accesslog = "-" if access_log else None
    config.errorlog = None
    config.graceful_timeout = 1.0
    wrapped = _with_healthz(app)
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
