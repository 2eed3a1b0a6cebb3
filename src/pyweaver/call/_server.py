"""The call server: accept connections, answer requests with handlers.

::

    async with call.serve("tcp://127.0.0.1:0", handlers, deployment_id=d, fingerprint=f) as server:
        print(server.address)          # "tcp://127.0.0.1:54321"
        handlers[key] = another_handler  # handlers may be added while serving

On asyncio (and uvloop) connections are driven by ``asyncio.Protocol`` callbacks; on
trio, and for ``mem://`` endpoints, by anyio streams. Leaving the ``async with`` block
stops accepting, answers new requests ``unavailable`` (clients retry elsewhere), gives
running handlers up to ``shutdown_grace`` seconds, then cancels what is left and closes
every connection with a ``shutdown`` goodbye. When the block is left by an exception
(or cancellation) the grace period is skipped.

Bounded cost per peer (see ``docs/limits.md``): until its handshake is complete a
connection may send frames of at most ``max_handshake_frame`` bytes (64 KiB), and it is
closed if the handshake is not complete ``handshake_timeout`` seconds (5) after it was
accepted; at most ``max_connections`` (1,024) connections are open at once, and those
beyond are closed as soon as they are accepted (counted in
:attr:`Server.refused_connections`). A refused handshake tells the peer nothing about
this server. Warnings about misbehaving peers are logged at most once per reason per
``warning_interval`` seconds (10).

Mutual TLS and authorization (see ``docs/security.md``): with ``ssl_context`` every
connection is TLS, and the context decides what the client must present (pyweaver's
contexts require a certificate signed by the deployment's CA). ``authorize`` maps the
client's identity (:func:`~._transport.peer_identity`: the ``pyweaver://`` URI in its
certificate; None without one) to the method keys it may call, or None for all of them.
It is called once per connection; each request then costs one frozenset lookup. A
request for any other key is answered ``not-authorized`` (the same answer whether or
not this server has that method) and logged, rate-limited.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping, Set
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import anyio
import anyio.abc

from pyweaver._errors import NotAuthorized
from pyweaver.call import _anyio_driver, _asyncio_driver, _kinds
from pyweaver.call._backend import current_backend
from pyweaver.call._ratelimit import DEFAULT_WARNING_INTERVAL, RateLimitedLog
from pyweaver.call._session import Driver, Handler, ServerSession
from pyweaver.call._spin import Spinner, spin_window
from pyweaver.call._transport import (
    Address,
    listen_stream,
    parse_address,
    peer_identity,
    tls_accept,
)
from pyweaver.call._wire import DEFAULT_MAX_FRAME, DEFAULT_MAX_HANDSHAKE_FRAME

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "Authorizer",
    "DriverName",
    "Server",
    "serve",
]

DriverName = Literal["auto", "protocol", "streams"]

DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 1024

#: A peer's identity (None: no TLS, or no pyweaver identity) -> the method keys it may
#: call, or None for every key. Called once per connection.
Authorizer = Callable[[str | None], Set[bytes] | None]


async def _refuse_call(payload: bytes) -> bytes:
    raise NotAuthorized


class AuthorizedHandlers(Mapping[bytes, Handler]):
    """The handlers one peer may call: a view of the server's (which may grow while
    serving) through the frozenset of keys its identity allows."""

    __slots__ = ("_allowed", "_handlers", "_peer", "_warnings")

    def __init__(
        self,
        handlers: Mapping[bytes, Handler],
        allowed: Set[bytes],
        peer: str,
        warnings: RateLimitedLog,
    ) -> None:
        self._handlers = handlers
        self._allowed = frozenset(allowed)
        self._peer = peer
        self._warnings = warnings

    def get(self, key: bytes, default: Any = None) -> Any:
        if key in self._allowed:
            return self._handlers.get(key, default)
        self._warnings.warning(
            "not-authorized",
            "refused a call of method %s from %s: not authorized",
            key.hex(),
            self._peer,
        )
        return _refuse_call

    def __getitem__(self, key: bytes) -> Handler:
        handler: Handler | None = self.get(key)
        if handler is None:
            raise KeyError(key)
        return handler

    def __iter__(self) -> Iterator[bytes]:
        return (key for key in self._handlers if key in self._allowed)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Server:
    """A running call server (what :func:`serve` yields)."""

    def __init__(
        self,
        handlers: MutableMapping[bytes, Handler],
        *,
        deployment_id: str,
        fingerprint: bytes,
        max_frame: int,
        max_handshake_frame: int = DEFAULT_MAX_HANDSHAKE_FRAME,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
        ssl_context: ssl.SSLContext | None = None,
        authorize: Authorizer | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, got {handshake_timeout}")
        self.handlers = handlers
        self.deployment_id = deployment_id
        self.fingerprint = fingerprint
        self.max_frame = max_frame
        self.max_handshake_frame = max_handshake_frame
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.ssl_context = ssl_context
        self.authorize = authorize
        self.address = ""  # set once bound: the endpoint string clients dial
        self.driver: DriverName = "auto"  # which driver serves: "protocol" or "streams"
        #: Connections closed on arrival because ``max_connections`` were open.
        self.refused_connections = 0
        self.warnings = RateLimitedLog(logging.getLogger("pyweaver.call"), warning_interval)
        self._sessions: set[ServerSession] = set()
        self._accepted = 0  # connections accepted and not yet ended (streams driver)
        self._spinner: Spinner | None = None  # see serve

    @property
    def connections(self) -> int:
        """Connections currently open."""
        return len(self._sessions)

    def handlers_for(self, identity: str | None) -> Mapping[bytes, Handler]:
        """What a peer of ``identity`` may call (see :data:`Authorizer`)."""
        if self.authorize is None:
            return self.handlers
        allowed = self.authorize(identity)
        if allowed is None:
            return self.handlers
        return AuthorizedHandlers(
            self.handlers, allowed, identity or "an unidentified peer", self.warnings
        )

    def _make_session(
        self, driver: Driver, peer_name: str = "", identity: str | None = None
    ) -> ServerSession:
        session = ServerSession(
            handlers=self.handlers_for(identity),
            deployment_id=self.deployment_id,
            fingerprint=self.fingerprint,
            max_frame=self.max_frame,
            max_handshake_frame=self.max_handshake_frame,
            handshake_timeout=self.handshake_timeout,
            warnings=self.warnings,
            driver=driver,
            backend=current_backend(),
            peer_name=peer_name,
        )
        if self._spinner is not None:
            self._spinner.attach(session)
        return session

    def _refuse(self, open_connections: int) -> bool:
        """True (and counted, and warned about) when a new connection must be closed
        because ``open_connections`` are open already."""
        if open_connections < self.max_connections:
            return False
        self.refused_connections += 1
        self.warnings.warning(
            "too-many-connections",
            "call server %s refused a connection: %d connections are open (max_connections)",
            self.address,
            open_connections,
        )
        return True

    def _register(self, session: ServerSession) -> Callable[[], None]:
        self._sessions.add(session)
        return lambda: self._sessions.discard(session)

    async def _drain(self, grace: float) -> None:
        """Answer new requests "unavailable"; wait (bounded) for running ones."""
        for session in self._sessions:
            session.draining = True
        if grace > 0:
            with anyio.move_on_after(grace):
                while any(session.busy for session in self._sessions):
                    await anyio.sleep(0.005)
        for session in list(self._sessions):
            session.say_goodbye(_kinds.SHUTDOWN, "the server is shutting down")

    def __repr__(self) -> str:
        return f"<pyweaver.call.Server {self.address} connections={self.connections}>"


@asynccontextmanager
async def serve(
    address: str | socket.socket,
    handlers: MutableMapping[bytes, Handler] | None = None,
    *,
    deployment_id: str,
    fingerprint: bytes,
    max_frame: int = DEFAULT_MAX_FRAME,
    shutdown_grace: float = 5.0,
    driver: DriverName = "auto",
    max_handshake_frame: int = DEFAULT_MAX_HANDSHAKE_FRAME,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ssl_context: ssl.SSLContext | None = None,
    authorize: Authorizer | None = None,
    spin: float | None = None,
) -> AsyncIterator[Server]:
    """Serve calls on ``address`` (an endpoint string, or an already bound listening
    socket) with ``handlers`` (method key -> handler; looked up per request, so it may
    change while serving), over TLS with ``ssl_context``, each peer limited to what
    ``authorize`` allows. ``spin``: seconds the event loop keeps polling after a
    request arrives (``_spin``; None: ``PYWEAVER_SPIN_US``, else 100 µs, 250 µs on
    trio; 0: off).
    Yields the :class:`Server`; see the module docstring."""
    backend = current_backend()
    window = spin_window(spin, backend.name)
    server = Server(
        handlers if handlers is not None else {},
        deployment_id=deployment_id,
        fingerprint=bytes(fingerprint),
        max_frame=max_frame,
        max_handshake_frame=max_handshake_frame,
        handshake_timeout=handshake_timeout,
        max_connections=max_connections,
        warning_interval=warning_interval,
        ssl_context=ssl_context,
        authorize=authorize,
    )
    target: Address | socket.socket = (
        address if isinstance(address, socket.socket) else parse_address(address)
    )
    use_protocol = (
        driver != "streams"
        and backend.name == "asyncio"
        and (isinstance(target, socket.socket) or target.scheme != "mem")
    )
    if driver == "protocol" and not use_protocol:
        raise ValueError(f"the protocol driver needs asyncio and tcp/unix, not {address!r}")
    async with anyio.create_task_group() as spinning:
        if window > 0:
            server._spinner = Spinner(window)
            spinning.start_soon(server._spinner.run, backend)
        try:
            if use_protocol:
                server.driver = "protocol"
                async with _serve_protocol(server, target, shutdown_grace) as running:
                    yield running
            else:
                server.driver = "streams"
                async with _serve_streams(server, target, shutdown_grace) as running:
                    yield running
        finally:
            spinning.cancel_scope.cancel()


@asynccontextmanager
async def _serve_protocol(
    server: Server, target: Address | socket.socket, grace: float
) -> AsyncIterator[Server]:
    import asyncio

    tasks = _asyncio_driver.TaskSet(asyncio.get_running_loop())

    stopping = False

    def make_session(driver: _asyncio_driver.AsyncioDriver) -> ServerSession:
        # Made once the connection is up (after its TLS handshake): the peer is known.
        session = server._make_session(driver, identity=peer_identity(driver.peer_certificate))
        if stopping or server._refuse(len(server._sessions)):
            # Accepted while the server was closing (a client reconnecting to a
            # server that just said goodbye), or one too many: close it as soon as
            # it is made.
            driver.refuse()
            session.open = False
            return session
        unregister = server._register(session)

        def lost(exc: BaseException | None) -> None:
            session.close()
            unregister()

        driver.on_lost = lost
        return session

    listener, bound = await _asyncio_driver.listen(
        target,
        make_session,
        tasks,
        ssl_context=server.ssl_context,
        ssl_handshake_timeout=server.handshake_timeout,
    )
    server.address = str(bound)
    socket_file = _asyncio_driver.socket_file(bound)
    try:
        yield server
    except BaseException:
        grace = 0.0
        raise
    finally:
        stopping = True
        with anyio.CancelScope(shield=True):
            # Connections the loop has accepted but not yet made into transports must
            # be made (and refused) before the asyncio server closes: CPython 3.11
            # asserts in Server._attach on a transport made after close() and leaks
            # the socket.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            listener.close()
            # The path is free once nothing listens on it: remove our file now, before
            # draining, so a server started meanwhile at the same path keeps its own.
            if not isinstance(target, socket.socket):
                _asyncio_driver.unlink_socket(bound, socket_file)
            await server._drain(grace)
            await tasks.cancel_and_wait()
            with anyio.move_on_after(1.0):
                await listener.wait_closed()


@asynccontextmanager
async def _serve_streams(
    server: Server, target: Address | socket.socket, grace: float
) -> AsyncIterator[Server]:
    listener, bound = await listen_stream(target)
    server.address = str(bound)
    socket_file = _asyncio_driver.socket_file(bound)

    def make_session(driver: _anyio_driver.StreamDriver) -> ServerSession:
        return server._make_session(driver, identity=driver.peer_identity)

    async def accept_loop(task_group: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                return
            except OSError:
                # e.g. EMFILE: back off a little rather than spin
                await anyio.sleep(0.05)
                continue
            if server._refuse(server._accepted):
                await anyio.aclose_forcefully(stream)
                continue
            server._accepted += 1
            task_group.start_soon(serve_one, stream)

    async def serve_one(stream: anyio.abc.ByteStream) -> None:
        try:
            if server.ssl_context is not None:
                secured = await _tls_handshake(server, stream)
                if secured is None:
                    return
                stream = secured
            await _anyio_driver.serve_stream(stream, make_session, server._register)
        finally:
            server._accepted -= 1

    async with anyio.create_task_group() as connections, anyio.create_task_group() as acceptor:
        acceptor.start_soon(accept_loop, connections)
        try:
            yield server
        except BaseException:
            grace = 0.0
            raise
        finally:
            with anyio.CancelScope(shield=True):
                acceptor.cancel_scope.cancel()
                await listener.aclose()
                # As above: our socket file goes as soon as nothing listens on it.
                if not isinstance(target, socket.socket):
                    _asyncio_driver.unlink_socket(bound, socket_file)
                await server._drain(grace)
                # Connections end once their goodbyes are flushed; bounded anyway.
                with anyio.move_on_after(max(1.0, grace if math.isfinite(grace) else 1.0)):
                    while server._sessions:
                        await anyio.sleep(0.005)
                connections.cancel_scope.cancel()


async def _tls_handshake(
    server: Server, stream: anyio.abc.ByteStream
) -> anyio.abc.ByteStream | None:
    """The server side of a connection's TLS handshake, bounded by the handshake
    timeout; None (the stream closed, a rate-limited warning logged) when it fails."""
    assert server.ssl_context is not None
    problem = "no TLS handshake in time"
    with anyio.move_on_after(server.handshake_timeout):
        try:
            return await tls_accept(stream, server.ssl_context)
        except (ssl.SSLError, OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            problem = f"TLS handshake failed: {exc}"
    server.warnings.warning(
        "tls-handshake", "refused call connection on %s: %s", server.address, problem
    )
    await anyio.aclose_forcefully(stream)
    return None
