"""The listener proxy: one TCP (L4) proxy per listener, in front of its replicas.

Every replica of a component binds its listener on a private ``localhost:0`` address;
clients dial the proxy's address, and the proxy spreads connections over the replicas.
It copies bytes, not requests, so HTTP/1.1, HTTP/2 (h2c and TLS), gRPC, websockets and
any raw TCP protocol pass untouched (Service Weaver's multi deployer proxied HTTP only,
which stopped gRPC and raw-TCP users: weaver issues #769, #792).

Theory of operation:

- Each accepted connection is handed to the backend with the fewest active proxied
  connections, ties broken round robin. A backend that refuses (or does not answer
  within ``connect_timeout``) is skipped: the next candidate is tried, each backend at
  most once per connection, and the refusing one is tried last for ``cooldown`` seconds.
  When none accepts, the client connection is closed.
- The two directions are copied independently. End of stream in one direction is passed
  on as a half-close (``shutdown(SHUT_WR)``), so protocols that half-close keep working;
  a reset or error in either direction closes both. Once the backend has closed its
  side, the client gets ``half_close_timeout`` seconds to finish and close its own;
  then both are closed (a client that never closes would otherwise hold two
  descriptors forever).
- Every connection costs two descriptors, so the proxy bounds them: at most
  ``max_connections`` proxied connections at once (one accepted beyond that is closed
  at once, counted in :attr:`TcpProxy.refused_connections`), and a connection on which
  no byte moved either way for ``idle_timeout`` seconds is closed.
- Backends are updated at runtime (:meth:`TcpProxy.add_backend`,
  :meth:`~TcpProxy.remove_backend`, :meth:`~TcpProxy.remove_backends_of`,
  :meth:`~TcpProxy.set_backends`), or come from a callable asked on every connection.
  Removing a backend affects new connections only; open ones run to their end.
- All connection tasks live in the proxy's task group; leaving ``async with`` (or
  :meth:`TcpProxy.aclose`) closes the listener and every proxied connection.

An address is ``"host:port"`` (``"[::1]:port"`` for IPv6). An empty host means
127.0.0.1, so ``":0"`` (the default) is a free loopback port; listen on ``0.0.0.0``
explicitly to accept connections from other machines.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import cast

import anyio
import anyio.abc
import attrs

from pyweaver._errors import ListenerInUseError, ProxyError
from pyweaver._net import format_address

__all__ = [
    "BackendStats",
    "ListenerInUseError",
    "ProxyError",
    "TcpProxy",
    "format_address",
    "parse_address",
]

Backend = tuple[str, int]
BackendSource = Callable[[], Iterable[Backend | str]]

_CHUNK = 64 * 1024

#: Defaults: a 1,024-descriptor process can hold this many connections (2 fds each)
#: and still start weavelets; an idle connection is closed after 5 minutes; a client
#: has 30 s to close its side after the backend closed its own.
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_HALF_CLOSE_TIMEOUT = 30.0


def parse_address(address: str, *, default_host: str = "127.0.0.1") -> Backend:
    """``"host:port"`` / ``"[v6]:port"`` / ``":port"`` / ``""`` to ``(host, port)``."""
    if not address:
        return default_host, 0
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid address {address!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or default_host, int(port_text)


def _as_backend(backend: Backend | str) -> Backend:
    if isinstance(backend, str):
        return parse_address(backend)
    host, port = backend
    return host, int(port)


@attrs.define
class BackendStats:
    """Counters for one backend: connections open now, proxied so far, and failed
    connection attempts."""

    active: int = 0
    total: int = 0
    failures: int = 0
    cooldown_until: float = 0.0


class TcpProxy(anyio.AsyncContextManagerMixin):
    """An L4 proxy listening on ``listen_address`` for the span of ``async with``.

    Args:
        listen_address: where to listen (see the module docstring).
        backends: the initial backends (``(host, port)`` pairs or ``"host:port"``
            strings), or a callable returning the current ones, asked per connection.
        name: the listener's name, for error messages.
        connect_timeout: seconds to wait for a backend to accept.
        cooldown: seconds a refusing backend is tried last.
        max_connections: proxied connections open at once, at most.
        idle_timeout: seconds a connection may stay without traffic (None: forever).
        half_close_timeout: seconds the client may keep its side open once the
            backend closed its own.
    """

    def __init__(
        self,
        listen_address: str = ":0",
        backends: BackendSource | Iterable[Backend | str] = (),
        *,
        name: str = "",
        connect_timeout: float = 5.0,
        cooldown: float = 1.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        half_close_timeout: float = DEFAULT_HALF_CLOSE_TIMEOUT,
    ) -> None:
        self.listen_address = listen_address
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.half_close_timeout = half_close_timeout
        self.connections = 0
        """Proxied connections open now."""
        self.refused_connections = 0
        """Connections closed at once because ``max_connections`` were open."""
        self.name = name
        self.connect_timeout = connect_timeout
        self.cooldown = cooldown
        self._source: BackendSource | None = None
        self._static: dict[Backend, str] = {}  # backend -> owner
        self._held: set[str] = set()  # owners whose backends get no new connections
        if callable(backends):
            self._source = backends
        else:
            for backend in backends:
                self._static[_as_backend(backend)] = ""
        self._stats: dict[Backend, BackendStats] = {}
        self._turn = itertools.count()
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._closed = anyio.Event()
        self.address = ""
        """The address clients dial, ``"host:port"``; set once listening."""

    # ----------------------------------------------------------------- backends

    @property
    def backends(self) -> list[str]:
        """The current backends, as ``"host:port"`` strings."""
        return [format_address(*backend) for backend in self._current()]

    def _current(self) -> list[Backend]:
        if self._source is not None:
            return [_as_backend(backend) for backend in self._source()]
        if self._held:
            return [b for b, owner in self._static.items() if owner not in self._held]
        return list(self._static)

    def add_backend(self, backend: Backend | str, *, owner: str = "") -> None:
        """Send new connections to ``backend`` too. ``owner`` tags it (e.g. with a
        replica id) for :meth:`remove_backends_of`."""
        self._static[_as_backend(backend)] = owner

    def remove_backend(self, backend: Backend | str) -> None:
        """Send no new connections to ``backend``; open ones run to their end."""
        self._static.pop(_as_backend(backend), None)

    def remove_backends_of(self, owner: str) -> None:
        """Remove every backend added with this ``owner``."""
        for backend in [b for b, o in self._static.items() if o == owner]:
            del self._static[backend]
        self._held.discard(owner)

    def hold_owner(self, owner: str, held: bool = True) -> None:
        """Send no new connections to ``owner``'s backends while ``held`` (an
        unresponsive replica), without forgetting them; ``held=False`` resumes."""
        if held:
            self._held.add(owner)
        else:
            self._held.discard(owner)

    def set_backends(self, backends: Iterable[Backend | str]) -> None:
        """Replace the backends (and stop asking a callable given at construction)."""
        self._source = None
        self._static = {_as_backend(backend): "" for backend in backends}

    def stats(self) -> dict[str, BackendStats]:
        """Counters per backend ever used, keyed by ``"host:port"``."""
        return {format_address(*b): attrs.evolve(s) for b, s in self._stats.items()}

    # ----------------------------------------------------------------- lifecycle

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[TcpProxy]:
        host, port = parse_address(self.listen_address)
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            shown = format_address(host, port)
            if exc.errno == errno.EADDRINUSE:
                raise ListenerInUseError(shown) from exc
            what = f"listener {self.name!r}" if self.name else "the proxy"
            raise ProxyError(f"{what} cannot listen on {shown}: {exc.strerror or exc}") from exc
        self._listener = listener
        # "localhost" may mean one socket per address family, all on one port.
        sockets = [cast(anyio.abc.SocketListener, one) for one in listener.listeners]
        local = sockets[0].extra(anyio.abc.SocketAttribute.local_address)
        self.address = format_address(str(local[0]), int(local[1]))
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                for socket_listener in sockets:
                    group.start_soon(self._serve, socket_listener, group)
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            self._closed.set()

    async def aclose(self) -> None:
        """Close the listener and every proxied connection; returns once closed, or
        at once if called from within the ``async with`` block itself."""
        if self._group is None or self._closed.is_set():
            return
        self._group.cancel_scope.cancel()
        await self._closed.wait()

    async def _serve(self, listener: anyio.abc.SocketListener, group: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                client = await listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await anyio.sleep(0.1)  # out of descriptors: let connections finish
                    continue
                raise
            if self.connections >= self.max_connections:
                self.refused_connections += 1
                await client.aclose()
                continue
            self.connections += 1
            group.start_soon(self._handle, client)

    # ----------------------------------------------------------------- connections

    def _candidates(self) -> list[Backend]:
        backends = self._current()
        if not backends:
            return []
        now = anyio.current_time()
        start = next(self._turn) % len(backends)
        rotated = backends[start:] + backends[:start]
        stats = self._stats

        def preference(backend: Backend) -> tuple[bool, int]:
            entry = stats.get(backend)
            if entry is None:
                return False, 0
            return entry.cooldown_until > now, entry.active

        return sorted(rotated, key=preference)  # stable: ties stay in rotated order

    async def _connect(self) -> tuple[Backend, anyio.abc.SocketStream] | None:
        for backend in self._candidates():
            stats = self._stats.setdefault(backend, BackendStats())
            # Counted as active while connecting, so that connections accepted at the
            # same moment spread instead of all picking the same idle backend.
            stats.active += 1
            try:
                with anyio.fail_after(self.connect_timeout):
                    upstream = await anyio.connect_tcp(*backend)
            except (OSError, TimeoutError):
                stats.active -= 1
                stats.failures += 1
                stats.cooldown_until = anyio.current_time() + self.cooldown
                continue
            except BaseException:
                stats.active -= 1
                raise
            stats.cooldown_until = 0.0
            stats.total += 1
            return backend, upstream
        return None

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        # One connection's failure never takes the listener down.
        try:
            await self._proxy_connection(client)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self.connections -= 1

    async def _proxy_connection(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            connected = await self._connect()
            if connected is None:
                return
            backend, upstream = connected
            stats = self._stats[backend]
            try:
                async with upstream, anyio.create_task_group() as pair:
                    link = _Link(pair.cancel_scope, self.idle_timeout)
                    pair.start_soon(link.pipe, client, upstream, None)
                    pair.start_soon(link.pipe, upstream, client, self.half_close_timeout)
                    if self.idle_timeout is not None:
                        pair.start_soon(link.watch_idle)
            finally:
                stats.active -= 1


class _Link:
    """The two directions of one proxied connection, and its idle timer."""

    __slots__ = ("idle_timeout", "last_traffic", "pair", "pipes")

    def __init__(self, pair: anyio.CancelScope, idle_timeout: float | None) -> None:
        self.pair = pair
        self.idle_timeout = idle_timeout
        self.last_traffic = anyio.current_time()
        self.pipes = 2

    async def watch_idle(self) -> None:
        assert self.idle_timeout is not None
        while True:
            idle_until = self.last_traffic + self.idle_timeout
            if anyio.current_time() >= idle_until:
                self.pair.cancel()
                return
            await anyio.sleep_until(idle_until)

    async def pipe(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        linger: float | None,
    ) -> None:
        """Copy ``source`` to ``sink``; pass end of stream on as a half-close, then give
        the other direction ``linger`` seconds (None: as long as it likes) to end too.
        An error on either side ends the whole connection (both directions)."""
        try:
            while True:
                try:
                    data = await source.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                self.last_traffic = anyio.current_time()
                await sink.send(data)
            await sink.send_eof()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.pair.cancel()
            return
        self.pipes -= 1
        if self.pipes == 0:
            self.pair.cancel()  # both directions ended: no idle timer left to wait for
        elif linger is not None:
            await anyio.sleep(linger)
            self.pair.cancel()
