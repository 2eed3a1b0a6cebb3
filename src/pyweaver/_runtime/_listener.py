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

import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import attrs

from pyweaver._net import ASGIApp, bind_socket, format_address, serve_asgi_socket

__all__ = [
    "Listener",
    "ListenerOptions",
    "bind_listener",
    "serve_asgi",
]


@attrs.frozen(kw_only=True)
class ListenerOptions:
    """How to bind a listener when the deployer has no address configured for it.

    Attributes:
        local_address: ``"host:port"``; ``""`` means ``localhost:0`` (any free port).
    """

    local_address: str = ""


def bind_listener(name: str, address: str, *, proxy_addr: str = "") -> Listener:
    """Bind and listen on ``address`` now, so the port is known and held."""
    return Listener(name, bind_socket(address, what=f"listener {name!r}"), proxy_addr=proxy_addr)


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


async def serve_asgi(listener: Listener, app: ASGIApp, *, access_log: bool = False) -> None:
    """Serve the ASGI ``app`` on ``listener`` until cancelled (asyncio or trio).

    Uses hypercorn, which speaks HTTP/1.1, HTTP/2 (h2c) and websockets on both anyio
    backends. Cancel the calling scope to stop it.
    """
    await serve_asgi_socket(listener.socket, app, access_log=access_log)
