"""The portable I/O driver: anyio byte streams, for trio and for the in-memory link.

One reader task feeds whatever each ``receive`` returned (up to 256 KiB, many frames) to
the session; one writer task sends everything queued since its last send in a single
``send``. Callers only append to the queue and wake the writer: no lock per frame and no
checkpoint per frame, which is what makes a naive anyio-streams protocol slow.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from ._backend import Backend, FutureLike, current_backend
from ._session import ClientSession, ServerSession
from ._transport import Address, connect_stream

__all__ = ["StreamDriver", "connect", "serve_stream"]

_RECEIVE_SIZE = 256 * 1024
_HIGH_WATER = 4 * 1024 * 1024  # queued bytes above which writers wait
_FLUSH_TIMEOUT = 1.0  # seconds a closing connection may take to send what is queued


class StreamDriver:
    """Pumps one connection's bytes between an anyio byte stream and its session."""

    __slots__ = (
        "_backend",
        "_buffer",
        "_buffered",
        "_closed",
        "_drained",
        "_read_scope",
        "_scope",
        "_stream",
        "_task_group",
        "_writer_done",
        "_writer_wakeup",
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
        self._scope: anyio.CancelScope | None = None
        self._read_scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._writer_done = anyio.Event()
        self.receive: Callable[[bytes], None] = _drop

    async def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Read and write until the connection ends; then close the stream."""
        try:
            async with anyio.create_task_group() as task_group:
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
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._closed = True
                self._buffered = 0
                self.receive(b"")  # the session learns the connection is gone
                if self._scope is not None:
                    self._scope.cancel()
                return
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

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self._wake_writer()

    def cork(self) -> None:
        pass  # the writer task already sends a whole batch at once

    def uncork(self) -> None:
        pass

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


def _drop(data: bytes) -> None:
    pass


# ------------------------------------------------------------------ client


async def connect(
    address: Address,
    endpoint: str,
    *,
    deployment_id: str,
    fingerprint: bytes,
    max_frame: int,
) -> tuple[ClientSession, StreamDriver]:
    """Connect and handshake. The caller must then run ``driver.run()`` (the pump) for
    as long as it uses the session."""
    backend = current_backend()
    stream = await connect_stream(address)
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
        session.attach(driver)
        # Handshake inline, before any pump task exists.
        hello, driver._buffer[:] = b"".join(driver._buffer), []
        driver._buffered = 0
        await stream.send(hello)
        while not session.open:
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""
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
    unregister = register(session)
    try:
        await driver.run(on_started=session.start)
    finally:
        session.close()
        unregister()
