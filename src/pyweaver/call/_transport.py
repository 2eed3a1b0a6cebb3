"""Endpoint strings and the byte-stream transports behind them.

=============================  ============================================
endpoint                       transport
=============================  ============================================
``tcp://127.0.0.1:1234``       TCP (``TCP_NODELAY`` on)
``tcp://[::1]:1234``           TCP over IPv6
``unix:///path/to.sock``       a Unix domain socket
``mem://name``                 an in-memory link inside this process (tests)
=============================  ============================================

Any of them can carry TLS (``ssl_context``): both ends present a certificate and
verify the other's (mutual TLS). The server learns the client's identity from its
certificate: :func:`peer_identity`, the first ``pyweaver://`` URI subject-alternative
name. TLS on ``mem://`` links exists for tests.

The in-memory transport is a pair of anyio memory object streams of byte chunks behind
the :class:`anyio.abc.ByteStream` interface, with a registry of named listeners; it
works on every backend and needs no sockets.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.tls import TLSAttribute, TLSStream

__all__ = [
    "Address",
    "MemoryByteStream",
    "MemoryListener",
    "StreamListener",
    "connect_stream",
    "listen_stream",
    "memory_stream_pair",
    "parse_address",
    "peer_identity",
    "stream_peer_identity",
    "tls_accept",
]

Scheme = Literal["tcp", "unix", "mem"]


@attrs.frozen
class Address:
    """A parsed endpoint string."""

    scheme: Scheme
    host: str = ""  # tcp
    port: int = 0  # tcp
    path: str = ""  # unix: the socket path; mem: the link name

    def __str__(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        return f"{self.scheme}://{self.path}"


def parse_address(endpoint: str) -> Address:
    """Parse an endpoint string; raises ValueError naming what is wrong."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"endpoint {endpoint!r} has no scheme (tcp://, unix:// or mem://)")
    if scheme == "tcp":
        host, sep, port_text = rest.rpartition(":")
        if not sep or not port_text.isdigit() or not host:
            raise ValueError(f"endpoint {endpoint!r} is not tcp://HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"endpoint {endpoint!r}: write IPv6 hosts as [addr]")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"endpoint {endpoint!r}: port out of range")
        return Address("tcp", host=host, port=port)
    if scheme == "unix":
        if not rest:
            raise ValueError(f"endpoint {endpoint!r} has no socket path")
        return Address("unix", path=rest)
    if scheme == "mem":
        return Address("mem", path=rest)
    raise ValueError(f"endpoint {endpoint!r}: unknown scheme {scheme!r} (tcp, unix or mem)")


def socket_address(sock: socket.socket) -> Address:
    """The endpoint of a bound listening socket."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        return Address("unix", path=name if isinstance(name, str) else name.decode())
    host, port = sock.getsockname()[:2]
    return Address("tcp", host=host, port=port)


# ------------------------------------------------------------------ in memory


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte link."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._leftover = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._leftover:
            self._leftover = await self._receive.receive()
        chunk, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return chunk

    async def send(self, item: bytes) -> None:
        if item:
            await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](math.inf)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](math.inf)
    return (
        MemoryByteStream(a_to_b_send, b_to_a_receive),
        MemoryByteStream(b_to_a_send, a_to_b_receive),
    )


_memory_listeners: dict[str, MemoryListener] = {}
_memory_names = itertools.count(1)


class MemoryListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """A named in-memory listener; ``mem://NAME`` connects to it."""

    def __init__(self, name: str = "") -> None:
        if not name:
            name = f"link-{os.getpid()}-{next(_memory_names)}"
        if name in _memory_listeners:
            raise OSError(f"mem://{name} is already being listened on")
        self.name = name
        self._send, self._receive = anyio.create_memory_object_stream[anyio.abc.ByteStream](
            math.inf
        )
        _memory_listeners[name] = self

    @property
    def address(self) -> Address:
        return Address("mem", path=self.name)

    def _connect(self) -> anyio.abc.ByteStream:
        client, server = memory_stream_pair()
        try:
            self._send.send_nowait(server)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ConnectionRefusedError(f"mem://{self.name} is closed") from None
        return client

    async def accept(self) -> anyio.abc.ByteStream:
        return await self._receive.receive()

    async def serve(
        self,
        handler: object,
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:  # pragma: no cover - the server drives accept() itself
        raise NotImplementedError

    async def aclose(self) -> None:
        if _memory_listeners.get(self.name) is self:
            del _memory_listeners[self.name]
        self._send.close()
        while True:
            try:
                stream = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            await stream.aclose()
        self._receive.close()


def connect_memory(name: str) -> anyio.abc.ByteStream:
    listener = _memory_listeners.get(name)
    if listener is None:
        raise ConnectionRefusedError(f"nothing listens on mem://{name}")
    return listener._connect()


# ------------------------------------------------------------------ streams


async def connect_stream(
    address: Address, ssl_context: ssl.SSLContext | None = None
) -> anyio.abc.ByteStream:
    """Open a byte stream to ``address`` (raises OSError when nobody listens), over
    TLS when ``ssl_context`` is given (the handshake is done when this returns)."""
    stream: anyio.abc.ByteStream
    if address.scheme == "tcp":
        stream = await anyio.connect_tcp(address.host, address.port)
    elif address.scheme == "unix":
        stream = await anyio.connect_unix(address.path)
    else:
        await anyio.lowlevel.checkpoint()
        stream = connect_memory(address.path)
    if ssl_context is None:
        return stream
    try:
        # Not "standard compatible": the call protocol frames its own messages, so a
        # close without TLS close_notify cannot truncate one unnoticed.
        return await TLSStream.wrap(
            stream, server_side=False, ssl_context=ssl_context, standard_compatible=False
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        raise


async def tls_accept(stream: anyio.abc.ByteStream, ssl_context: ssl.SSLContext) -> TLSStream:
    """The server side of a TLS handshake on an accepted ``stream`` (raises on failure:
    an unverifiable client certificate, a peer that speaks no TLS...)."""
    return await TLSStream.wrap(
        stream, server_side=True, ssl_context=ssl_context, standard_compatible=False
    )


def peer_identity(certificate: Mapping[str, Any] | None) -> str | None:
    """The identity a verified peer certificate (as ``SSLSocket.getpeercert()`` gives
    it) names: its first ``pyweaver://`` URI subject-alternative name."""
    if not certificate:
        return None
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith("pyweaver://"):
            return value
    return None


def stream_peer_identity(stream: anyio.abc.ByteStream) -> str | None:
    """:func:`peer_identity` of a TLS stream's peer (None for a plain stream)."""
    certificate = stream.extra(TLSAttribute.peer_certificate, None)
    return peer_identity(certificate)


class StreamListener(Protocol):
    """What the server needs of a listener."""

    async def accept(self) -> anyio.abc.ByteStream: ...
    async def aclose(self) -> None: ...


async def listen_stream(address: Address | socket.socket) -> tuple[StreamListener, Address]:
    """A listener on ``address`` (or on an already bound socket) and the address it is
    bound to (port 0 resolved)."""
    if isinstance(address, socket.socket):
        listener = await anyio.abc.SocketListener.from_socket(address)
        return listener, socket_address(address)
    if address.scheme == "tcp":
        # One socket (anyio's create_tcp_listener may make several, with no accept()).
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.create_server((address.host, address.port), family=family, backlog=1024)
        try:
            tcp = await anyio.abc.SocketListener.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        return tcp, socket_address(sock)
    if address.scheme == "unix":
        unix = await anyio.create_unix_listener(address.path)
        return unix, address
    memory = MemoryListener(address.path)
    return memory, memory.address
