"""The fast I/O driver for asyncio (and uvloop): ``asyncio.BufferedProtocol`` callbacks.

There is no reader task and no stream layer: the loop reads (``recv_into``) straight
into a buffer this thread reuses for every connection, and the session turns all the
frames in what one read returned into events at once, copying out only the payloads.
(A plain ``asyncio.Protocol`` would get a fresh 256 KiB ``bytes`` per read: glibc serves
an allocation that large with ``mmap``, or grows and trims the heap for it, which cost
~20 µs of system time per read in a deployed weavelet, measured with cProfile in
``benchmarks/component_echo``.)

Writes are coalesced: what is written while a batch is corked, or during one loop
iteration, goes out in as few ``transport.write`` calls (``send`` syscalls) as the
chunking below allows; a lone call (nothing else in flight) goes out at once.

With an ``ssl_context`` the loop's own TLS layer (``create_server(ssl=...)``,
``create_connection(ssl=...)``) sits under the protocol; a server connection's session
is made once the TLS handshake is done, so it knows the peer's certificate.

Flow control follows the transport's high/low-water marks: a server stops reading from
a client that does not read its answers, and a client's calls wait while its requests
cannot drain.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

from pyweaver.call import _backend
from pyweaver.call._protocol import ReadBytes
from pyweaver.call._session import ClientSession, ServerSession
from pyweaver.call._transport import Address, socket_address

__all__ = ["AsyncioDriver", "TaskSet", "connect", "listen"]

# Write batching. Frames written in one loop iteration go out in one send, except that
# a batch is cut into chunks of half the frames in flight (at least _MIN_CHUNK): the
# peer starts on the first half while we produce the second, so two processes on two
# cores work at the same time instead of taking turns. Measured on 2 cores, 64 calls in
# flight: one send per iteration ~60-85 k calls/s, chunks of 1/2 ~120-140 k, 1/3 or a
# fixed 8-16 frames in between (benchmarks/remote_pyweaver.py).
_MIN_CHUNK = 16
_DIVISOR = 2
# Large frames are neither joined nor pushed past the transport's high-water mark: a
# batch over this many bytes goes to the transport frame by frame, only while it is not
# paused, and the rest waits here (in a list: no copy) for resume_writing. Otherwise
# stdlib asyncio copies a multi-MiB batch into its own buffer and then moves what is
# left after every partial send (measured, 64 KiB echo, 64 in flight: ~40% of the
# client's CPU).
_MAX_JOIN_BYTES = 256 * 1024
# The read buffer: one per thread (an event loop runs on one thread, and a read's bytes
# are consumed before the loop reads again), as large as asyncio's own reads.
_READ_SIZE = 256 * 1024
_read_buffers = threading.local()


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_read_buffers, "view", None)
    if view is None:
        view = _read_buffers.view = memoryview(bytearray(_READ_SIZE))
    return view


class TaskSet:
    """The tasks of one server (its request dispatchers), cancelled and awaited when
    it stops: a task group for code that starts tasks from protocol callbacks."""

    __slots__ = ("_loop", "_tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler(
                {"message": "pyweaver.call task failed", "exception": task.exception()}
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_and_wait(self) -> None:
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class AsyncioDriver(asyncio.BufferedProtocol):
    """Pumps one connection's bytes between an asyncio transport and its session."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        tasks: TaskSet | None = None,
        make_session: Callable[[AsyncioDriver], ServerSession] | None = None,
    ) -> None:
        self._loop = loop
        self._make_session = make_session
        self._tasks = tasks
        self._transport: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0  # bytes in _buffer
        self._scheduled = False
        self._corked = False
        self._paused = False
        self._resumed: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.receive: Callable[[ReadBytes], None] = _drop
        self._read = _read_buffer()
        self.backlog: Callable[[], int] = _zero  # frames in flight on this connection
        self._chunk = _MIN_CHUNK
        self.on_lost: Callable[[BaseException | None], None] = _ignore
        self.peer_name = ""
        #: The peer's verified TLS certificate (``getpeercert()``), None without TLS.
        self.peer_certificate: Mapping[str, Any] | None = None

    # -------------------------------------------------------------- asyncio.Protocol

    def refuse(self) -> None:
        """Close the connection as soon as it is made (the server is stopping)."""
        self._closed = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._closed:  # refused
            transport.close()
            return
        # uvloop's transports do not subclass asyncio.Transport but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_name = str(peer) if peer else "local"
        self.peer_certificate = transport.get_extra_info("peercert")
        if self._make_session is not None:  # a server connection
            session = self._make_session(self)  # also sets on_lost
            self.receive = session.receive
            self.backlog = session.backlog
            if not session.open:  # refused: the server is stopping, or has too many
                self._transport = None
                transport.close()
                return
            session.start()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read

    def buffer_updated(self, nbytes: int) -> None:
        # The session copies out what it keeps before this returns.
        self.data_received(self._read[:nbytes])

    def data_received(self, data: ReadBytes) -> None:
        self.receive(data)
        # The tasks this data woke run next, in order; flush right after them, so what
        # they write goes out in the same loop iteration.
        self._scheduled = True
        self._loop.call_soon(self._flush_scheduled)

    def eof_received(self) -> bool:
        self.receive(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._buffer.clear()
        self._buffered = 0
        self._wake_all_writers()
        self.on_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        # A server stops taking requests from a client that does not read its answers.
        if self._tasks is not None and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._tasks is not None and self._transport is not None:
            self._transport.resume_reading()
        if self._buffer and not self._corked:
            self._flush()
        self._wake_writers()

    def _wake_writers(self) -> None:
        """Let the first waiting writer go; each passes the turn on (see drained)."""
        waiters = self._resumed
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all_writers(self) -> None:
        waiters, self._resumed = self._resumed, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -------------------------------------------------------------- Driver

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        buffer = self._buffer
        buffer.append(data)
        self._buffered += len(data)
        if (
            len(buffer) >= self._chunk
            or self._buffered >= _MAX_JOIN_BYTES
            or (not self._corked and self.backlog() <= 1)
        ):
            self._flush()  # a full chunk, or a lone call: nothing to batch it with
        elif not self._scheduled and not self._corked:
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)

    def cork(self) -> None:
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        self._flush()

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        if not self._corked:
            self._flush()

    def _flush(self, everything: bool = False) -> None:
        buffer = self._buffer
        transport = self._transport
        if not buffer or transport is None or self._closed:
            return
        if self._buffered < _MAX_JOIN_BYTES or everything:
            data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
            self._buffered = 0
            transport.write(data)
        else:
            # Frame by frame while the transport takes them (write() calls
            # pause_writing synchronously once its buffer passes the high-water mark).
            sent = 0
            for frame in buffer:
                if self._paused:
                    break
                transport.write(frame)
                self._buffered -= len(frame)
                sent += 1
            del buffer[:sent]
        self._chunk = max(_MIN_CHUNK, self.backlog() // _DIVISOR)

    def spawn(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._tasks is not None, "only server connections spawn tasks"
        self._tasks.spawn(function())

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._corked = False
            self._flush(everything=True)
            self._closed = True
            self._transport.close()

    @property
    def congested(self) -> bool:
        return self._paused

    async def drained(self) -> None:
        """Wait until the transport takes writes again. Writers go one at a time, in
        order: each one woken passes the turn to the next once it wrote, unless its
        write paused the transport again; a writer that finds the transport paused
        again waits at the front of the line. (Waking every
        writer on resume_writing woke 64 calls of 64 KiB to let one write: ~9 wake-ups
        per call, measured with cProfile.)"""
        first = False
        while self._paused and not self._closed:
            waiter = self._loop.create_future()
            if first:
                self._resumed.appendleft(waiter)
            else:
                self._resumed.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_writers()  # it was our turn: give it on
                raise
            first = True
        if self._resumed and not self._closed:
            self._loop.call_soon(self._pass_turn)

    def _pass_turn(self) -> None:
        """After a woken writer wrote (its task ran on from drained()): send what it
        wrote, and wake the next writer only if the transport still takes more."""
        if self._buffer and not self._corked:
            self._flush()
        if not self._paused:
            self._wake_writers()


def _drop(data: ReadBytes) -> None:
    pass


def _zero() -> int:
    return 0


def _ignore(exc: BaseException | None) -> None:
    pass


# ------------------------------------------------------------------ client


async def connect(
    address: Address,
    endpoint: str,
    *,
    deployment_id: str,
    fingerprint: bytes,
    max_frame: int,
    ssl_context: ssl.SSLContext | None = None,
) -> ClientSession:
    """Connect (over TLS with ``ssl_context``) and handshake; the session is open when
    this returns."""
    loop = asyncio.get_running_loop()
    session = ClientSession(
        endpoint,
        deployment_id=deployment_id,
        fingerprint=fingerprint,
        max_frame=max_frame,
        backend=_backend.current_backend(),
    )
    driver = AsyncioDriver(loop)
    driver.receive = session.receive
    driver.backlog = session.backlog
    driver.on_lost = session.connection_lost
    # Peers are named by certificate, not host name (no SNI, no host name check).
    tls: dict[str, Any] = {"ssl": ssl_context, "server_hostname": ""} if ssl_context else {}
    if address.scheme == "tcp":
        await loop.create_connection(lambda: driver, address.host, address.port, **tls)
    elif address.scheme == "unix":
        await loop.create_unix_connection(lambda: driver, address.path, **tls)
    else:
        raise ValueError(f"the asyncio driver has no {address.scheme}:// transport")
    session.attach(driver)
    try:
        await session.wait_handshake()
    except BaseException:
        session.close()
        raise
    return session


# ------------------------------------------------------------------ server


async def listen(
    address: Address | socket.socket,
    make_session: Callable[[AsyncioDriver], ServerSession],
    tasks: TaskSet,
    *,
    ssl_context: ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
) -> tuple[asyncio.Server, Address]:
    """Start accepting; every connection gets a driver, and a session once it is up
    (after its TLS handshake with ``ssl_context``)."""
    loop = asyncio.get_running_loop()

    def factory() -> AsyncioDriver:
        return AsyncioDriver(loop, tasks, make_session)

    tls: dict[str, Any] = {}
    if ssl_context is not None:
        tls = {"ssl": ssl_context, "ssl_handshake_timeout": ssl_handshake_timeout}
    if isinstance(address, socket.socket):
        if address.family == socket.AF_UNIX:
            server = await loop.create_unix_server(factory, sock=address, **tls)
        else:
            server = await loop.create_server(factory, sock=address, **tls)
        return server, socket_address(address)
    if address.scheme == "tcp":
        server = await loop.create_server(factory, address.host, address.port, **tls)
        return server, socket_address(server.sockets[0])
    if address.scheme == "unix":
        server = await loop.create_unix_server(factory, address.path, **tls)
        return server, address
    raise ValueError(f"the asyncio driver has no {address.scheme}:// transport")


def socket_file(address: Address) -> tuple[int, int, int] | None:
    """The identity of a Unix socket's file just bound (device, inode and change time:
    a file system may give a newer file the inode of a removed one), so that closing
    it later removes that file and not a newer server's socket at the same path."""
    if address.scheme != "unix":
        return None
    try:
        info = os.stat(address.path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


def unlink_socket(address: Address, identity: tuple[int, int, int] | None) -> None:
    """Remove the socket file of ``address`` if it is still the one whose identity
    :func:`socket_file` recorded (a server that restarted at the same path owns the
    file now, and removing it would strand that server's clients)."""
    if address.scheme != "unix" or identity is None:
        return
    try:
        info = os.stat(address.path)
        if (info.st_dev, info.st_ino, info.st_ctime_ns) == identity:
            os.unlink(address.path)
    except OSError:
        pass
