"""The portable I/O driver: anyio byte streams, for trio and for the in-memory link.

One reader task feeds whatever each ``receive`` returned (up to 256 KiB, many frames) to
the session; one writer task sends everything queued since its last send in a single
``send``. Callers only append to the queue and wake the writer: no lock per frame and no
checkpoint per frame, which is what makes a naive anyio-streams protocol slow. On trio,
full chunks (see :mod:`._asyncio_driver`) and lone calls go straight to the socket with
a non-blocking ``send`` while the writer is idle, as asyncio's ``transport.write`` does,
and the reader reads the socket itself into one reused buffer (see
``StreamDriver._read_socket``); never on TLS streams, where bytes must go through the
TLS layer.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from pyweaver.call._backend import Backend, FutureLike, current_backend
from pyweaver.call._protocol import ReadBytes
from pyweaver.call._session import ClientSession, ServerSession
from pyweaver.call._transport import Address, connect_stream, stream_peer_identity

__all__ = ["StreamDriver", "connect", "serve_stream"]

_RECEIVE_SIZE = 256 * 1024
_HIGH_WATER = 4 * 1024 * 1024  # queued bytes above which writers wait
_FLUSH_TIMEOUT = 1.0  # seconds a closing connection may take to send what is queued
# Batches are cut into chunks of half the frames in flight, as in _asyncio_driver.
_MIN_CHUNK = 16
_DIVISOR = 2


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


class _Group(Protocol):
    """What anyio task groups and trio nurseries share."""

    @property
    def cancel_scope(self) -> _Cancellable: ...
    def start_soon(self, function: Callable[..., Awaitable[Any]], /, *args: Any) -> None: ...


def _task_group(backend: Backend) -> AbstractAsyncContextManager[_Group]:
    """A trio nursery on trio (anyio's task group wraps every task in one more cancel
    scope, which a request that suspends pays for), an anyio task group elsewhere."""
    if backend.name == "trio":
        import trio

        return cast(AbstractAsyncContextManager[_Group], trio.open_nursery())
    return cast(AbstractAsyncContextManager[_Group], anyio.create_task_group())


class StreamDriver:
    """Pumps one connection's bytes between an anyio byte stream and its session."""

    __slots__ = (
        "_backend",
        "_buffer",
        "_buffered",
        "_chunk",
        "_closed",
        "_corked",
        "_drained",
        "_raw",
        "_read_scope",
        "_scope",
        "_sending",
        "_stream",
        "_task_group",
        "_writer_done",
        "_writer_wakeup",
        "backlog",
        "peer_identity",
        "receive",
    )

    def __init__(self, stream: anyio.abc.ByteStream, backend: Backend) -> None:
        self._stream = stream
        self._backend = backend
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._closed = False
        self._writer_wakeup: FutureLike[None] | None = None
        self._drained: list[FutureLike[None]] = []
        self._scope: _Cancellable | None = None
        self._read_scope: anyio.CancelScope | None = None
        self._task_group: _Group | None = None
        self._writer_done = anyio.Event()
        self._corked = False
        self._sending = False  # the writer task is inside stream.send()
        self._chunk = _MIN_CHUNK
        # On trio the socket may be written to directly (non-blocking) whenever the writer
        # task is not sending, like asyncio's transport.write(): a batch can then go out
        # in chunks, mid-iteration. Not on asyncio, where the socket belongs to a transport
        # that may hold unsent data of its own.
        self._raw: socket.socket | None = None
        tls = stream.extra(TLSAttribute.ssl_object, None) is not None
        #: The peer's identity from its TLS certificate (None on a plain stream).
        self.peer_identity = stream_peer_identity(stream) if tls else None
        if backend.name == "trio" and not tls:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if isinstance(raw, socket.socket):
                self._raw = raw
        self.receive: Callable[[ReadBytes], None] = _drop
        self.backlog: Callable[[], int] = _zero  # frames in flight on this connection

    async def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Read and write until the connection ends; then close the stream."""
        try:
            async with _task_group(self._backend) as task_group:
                self._task_group = task_group
                self._scope = task_group.cancel_scope
                task_group.start_soon(self._write_loop)
                if on_started is not None:
                    on_started()
                await self._read_loop()
                # Let the writer flush what is queued (a goodbye, say), within bounds.
                self._closed = True
                self._wake_writer()
                with anyio.move_on_after(_FLUSH_TIMEOUT):
                    await self._writer_done.wait()
                task_group.cancel_scope.cancel()
        finally:
            self._closed = True
            self._wake_drained()
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()

    async def _read_loop(self) -> None:
        if self._raw is not None:
            await self._read_socket(self._raw)
            return
        stream = self._stream
        with anyio.CancelScope() as self._read_scope:
            while not self._closed:
                if self._buffered > _HIGH_WATER:
                    # Take no more requests from a peer that does not read our answers.
                    await self.drained()
                    continue
                try:
                    data = await stream.receive(_RECEIVE_SIZE)
                except (
                    anyio.EndOfStream,
                    anyio.ClosedResourceError,
                    anyio.BrokenResourceError,
                    OSError,
                ):
                    data = b""
                self.receive(data)
                if not data:
                    return

    async def _read_socket(self, raw: socket.socket) -> None:
        """The read loop on trio over a plain socket: ``recv_into`` one buffer the
        session reads from (it copies what it keeps), and the session hears of the bytes
        before this task yields, so the tasks they wake run in the scheduler's next
        batch. Through the stream, they ran one batch later: trio's ``recv`` yields
        after it read, before it returns the bytes. A task yields once per read: it
        waits for the socket, or, after two reads in a row, checkpoints (a peer that
        never stops sending does not starve the other tasks)."""
        import trio

        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        buffer = bytearray(_RECEIVE_SIZE)
        view = memoryview(buffer)
        waited = True
        with anyio.CancelScope() as self._read_scope:
            while not self._closed:
                if self._buffered > _HIGH_WATER:
                    # Take no more requests from a peer that does not read our answers.
                    await self.drained()
                    continue
                try:
                    size = raw.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    try:
                        await wait_readable(raw)
                    except trio.ClosedResourceError:
                        size = 0
                    else:
                        waited = True
                        continue
                except OSError:
                    size = 0
                if not size:
                    self.receive(b"")
                    return
                self.receive(view[:size])
                if not waited:
                    await checkpoint()
                waited = False

    def _wake_reader(self) -> None:
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def _write_loop(self) -> None:
        try:
            await self._write_until_closed()
        finally:
            self._writer_done.set()

    async def _write_until_closed(self) -> None:
        buffer = self._buffer
        stream = self._stream
        new_future = self._backend.new_future
        while True:
            if not buffer:
                if self._closed:
                    return
                waiter: FutureLike[None] = new_future()
                self._writer_wakeup = waiter
                await waiter
                continue
            data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
            self._sending = True
            try:
                await stream.send(data)
            except (
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                anyio.EndOfStream,  # a TLS stream whose peer closed
                OSError,
            ):
                self._broken()
                return
            finally:
                self._sending = False
            self._buffered = sum(map(len, buffer))
            if self._buffered <= _HIGH_WATER:
                self._wake_drained()

    def _wake_writer(self) -> None:
        waiter = self._writer_wakeup
        if waiter is not None:
            self._writer_wakeup = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -------------------------------------------------------------- Driver

    def _broken(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._buffered = 0
        self.receive(b"")  # the session learns the connection is gone
        if self._scope is not None:
            self._scope.cancel()

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        buffer = self._buffer
        buffer.append(data)
        self._buffered += len(data)
        if len(buffer) >= self._chunk or (not self._corked and self.backlog() <= 1):
            self._flush()  # a full chunk, or a lone call: nothing to batch it with
        elif not self._corked:
            self._wake_writer()  # it runs after the tasks running now: the batch's end

    def _flush(self) -> None:
        """Send what is queued now if the socket takes it; the writer task sends the rest."""
        raw = self._raw
        buffer = self._buffer
        if raw is None or self._sending or not buffer:
            self._wake_writer()
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        try:
            sent = raw.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._broken()
            return
        if sent < len(data):
            buffer.append(data[sent:])
            self._buffered = len(data) - sent
            self._wake_writer()
        else:
            self._buffered = 0
        self._chunk = max(_MIN_CHUNK, self.backlog() // _DIVISOR)

    def cork(self) -> None:
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        if self._buffer:
            self._flush()

    def spawn(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._task_group is not None
        self._task_group.start_soon(function)

    def close(self) -> None:
        """Flush what is queued, then end the connection."""
        if self._closed:
            return
        self._closed = True
        # The reader stops; run() then lets the writer send what is queued.
        self._wake_writer()
        self._wake_reader()

    @property
    def congested(self) -> bool:
        return self._buffered > _HIGH_WATER

    async def drained(self) -> None:
        while self._buffered > _HIGH_WATER and not self._closed:
            waiter: FutureLike[None] = self._backend.new_future()
            self._drained.append(waiter)
            await waiter


def _drop(data: ReadBytes) -> None:
    pass


def _zero() -> int:
    return 0


# ------------------------------------------------------------------ client


async def connect(
    address: Address,
    endpoint: str,
    *,
    deployment_id: str,
    fingerprint: bytes,
    max_frame: int,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[ClientSession, StreamDriver]:
    """Connect (over TLS with ``ssl_context``) and handshake. The caller must then run
    ``driver.run()`` (the pump) for as long as it uses the session."""
    backend = current_backend()
    stream = await connect_stream(address, ssl_context)
    try:
        session = ClientSession(
            endpoint,
            deployment_id=deployment_id,
            fingerprint=fingerprint,
            max_frame=max_frame,
            backend=backend,
        )
        driver = StreamDriver(stream, backend)
        driver.receive = session.receive
        driver.backlog = session.backlog
        session.attach(driver)
        # Handshake inline, before any pump task exists.
        hello, driver._buffer[:] = b"".join(driver._buffer), []
        driver._buffered = 0
        await stream.send(hello)
        while not session.open:
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""  # (ssl.SSLError too: a server that refused our certificate)
            session.receive(data)
            if session.failure is not None:
                raise session.failure
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        raise
    return session, driver


# ------------------------------------------------------------------ server


async def serve_stream(
    stream: anyio.abc.ByteStream,
    make_session: Callable[[StreamDriver], ServerSession],
    register: Callable[[ServerSession], Callable[[], None]],
) -> None:
    """Serve one accepted connection until it ends."""
    driver = StreamDriver(stream, current_backend())
    session = make_session(driver)
    driver.receive = session.receive
    driver.backlog = session.backlog
    unregister = register(session)
    try:
        await driver.run(on_started=session.start)
    finally:
        session.close()
        unregister()
