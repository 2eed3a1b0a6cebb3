"""What happens on one connection, whichever I/O driver pumps its bytes.

A *driver* (:mod:`._asyncio_driver` or :mod:`._anyio_driver`) moves bytes between a
transport and a session, and offers the session a few operations (:class:`Driver`).
The session holds the sans-IO :class:`~._protocol.Connection` and does the rest:

- :class:`ClientSession`: the request ids and futures of the calls in flight on one
  connection to one server, cancellation, and failing every call when it breaks.
- :class:`ServerSession`: dispatching requests to handlers, each under its own cancel
  scope with the caller's deadline, metadata and trace context.

Server dispatch (Service Weaver's "run inline until it blocks", with tasks): one
*dispatcher* task per connection runs queued requests one after another, inside
itself, under one cancel scope (the dispatcher's) whose deadline is set to each
request's before it runs. Most handlers finish without ever suspending, and then a
request costs no task and no scope of its own, and the answers of a whole batch go out
in one write. When a handler does suspend, the dispatcher leaves the rest of the queue
to a fresh dispatcher task and stays with that handler (and the scope, now its alone)
until it finishes, so a slow handler never holds up the others. The method is then
remembered as one that suspends, and its later requests each get a task and a scope up
front, which lets many of them wait at once without handing the queue over again and
again; until one of them finishes without suspending (a handler that waited once, for
its component to be built, say), which puts the method back on the inline path.

Each handler runs in its own copy of the connection's ``contextvars.Context`` (driven
step by step with ``Context.run``), so the metadata and trace context it gets, and
anything it sets, never leak into other requests.
"""

from __future__ import annotations

import contextvars
import logging
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from functools import partial
from typing import Any, Final, Protocol

import anyio

from pyweaver._errors import (
    CallFailure,
    ConnectionLost,
    DefaultDeadlineExpired,
    LocalProtocolError,
    NotSent,
    RemoteProtocolError,
    ServerError,
)
from pyweaver.call import _kinds, _metadata, _tracing
from pyweaver.call._backend import Backend, FutureLike, Scope
from pyweaver.call._kinds import NotAuthorized, Unavailable
from pyweaver.call._protocol import (
    Cancel,
    Connection,
    Error,
    Goodbye,
    Handshake,
    HandshakeError,
    ReadBytes,
    Request,
    Response,
    Role,
    State,
)
from pyweaver.call._ratelimit import RateLimitedLog
from pyweaver.call._wire import DEFAULT_MAX_HANDSHAKE_FRAME, TraceContext

__all__ = [
    "CallFailure",
    "ClientSession",
    "ConnectionLost",
    "DefaultDeadlineExpired",
    "Driver",
    "Handler",
    "NotSent",
    "ServerError",
    "ServerSession",
]

_log = logging.getLogger("pyweaver.call")
_INF = math.inf

Handler = Callable[[bytes], Awaitable[bytes]]


# The most requests one connection may have queued or running at once; beyond it the
# server answers "unavailable" (retriable) instead of starting more handlers.
MAX_REQUESTS_PER_CONNECTION = 10_000

# What a refused peer is told: nothing about this side (its deployment, fingerprint or
# version). The refusing side logs the details; the refused one knows what it sent.
REFUSED: Final = "handshake refused"

_default_warnings = RateLimitedLog(_log)


class Driver(Protocol):
    """What a session asks of the driver that pumps its bytes."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer (the driver coalesces what is queued together)."""

    def cork(self) -> None:
        """Hold writes until :meth:`uncork` (a batch of answers goes out at once)."""

    def uncork(self) -> None: ...

    def spawn(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``function()`` in a task owned by the connection's server."""

    def close(self) -> None:
        """Send what is queued, then close the transport (idempotent)."""

    @property
    def congested(self) -> bool:
        """True while the peer is not reading fast enough; see :meth:`drained`."""

    async def drained(self) -> None:
        """Return once the write buffer is below its high-water mark again."""


# ------------------------------------------------------------------ client

#: The method key of keepalive probes (:meth:`ClientSession.probe`): no method has it
#: (method keys are sha256 prefixes of component and method names).
PROBE_KEY: Final = b"pyweaver.keepalive"[:16]


class ClientSession:
    """The client end of one connection (see the module docstring)."""

    __slots__ = (
        "_core",
        "_driver",
        "_expires",
        "_handshake",
        "_new_future",
        "_next_id",
        "_pending",
        "_write",
        "closed",
        "draining",
        "endpoint",
        "failure",
        "hit",
        "open",
        "poke",
        "received",
    )

    def __init__(
        self,
        endpoint: str,
        *,
        deployment_id: str,
        fingerprint: bytes,
        max_frame: int,
        backend: Backend,
    ) -> None:
        self.endpoint = endpoint
        self._core = Connection(
            Role.CLIENT, deployment_id=deployment_id, fingerprint=fingerprint, max_frame=max_frame
        )
        self._pending: dict[int, FutureLike[bytes]] = {}
        # The calls that have the client's default deadline (call_timeout), in the
        # order they were made, which is the order they expire in (see expire()).
        self._expires: dict[int, float] = {}
        self._next_id = 1
        self._new_future = backend.new_future
        # Resolved with None (handshake done) or the failure: never with an exception,
        # which asyncio would report as never retrieved when nobody awaits it.
        self._handshake: FutureLike[BaseException | None] = backend.new_future()
        self._driver: Driver | None = None
        self._write: Callable[[bytes], None] = _unattached
        self.open = False  # handshake done and not closed
        self.draining = False  # no new calls; close when the last one ends
        self.failure: BaseException | None = None  # why it closed
        self.closed = anyio.Event()
        self.received = 0  # receive() calls so far: the keepalive's sign of life
        #: Called when a lone request goes out (the client's spinner: see ``_spin``;
        #: with more in flight, batching matters more than one call's wake-up).
        self.poke: Callable[[], None] = _nothing
        self.hit: Callable[[], None] = _nothing  # bytes arrived (the spinner's)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def probe(self) -> None:
        """Send a keepalive probe: a request for :data:`PROBE_KEY`, which no server has
        a handler for, so a live server answers it at once (``unknown method``) without
        logging anything. The answer only counts as a sign of life (:attr:`received`);
        nobody waits for it."""
        if not self.open:
            return
        request_id = self._next_id
        self._next_id = request_id + 1
        try:
            frame = self._core.send_request(request_id, PROBE_KEY, 0, b"")
        except LocalProtocolError:
            return
        self._write(frame)

    def backlog(self) -> int:
        """Calls in flight (drivers size their write batches by it)."""
        return len(self._pending)

    def attach(self, driver: Driver) -> None:
        """Called by the driver once the transport is up: sends our handshake."""
        self._driver = driver
        self._write = driver.write
        driver.write(self._core.hello())

    async def wait_handshake(self) -> None:
        failure = await self._handshake
        if failure is not None:
            raise failure

    def receive(self, data: ReadBytes) -> None:
        """Bytes from the server (``b""``: it closed the stream)."""
        self.received += 1
        self.hit()
        try:
            events = self._core.receive_data(data)
        except HandshakeError as exc:
            self._goodbye(_kinds.HANDSHAKE_REFUSED, REFUSED)
            self.fail(HandshakeError(f"{self.endpoint}: {exc}"))
            return
        except RemoteProtocolError as exc:
            self._goodbye(_kinds.PROTOCOL, str(exc))
            self.fail(ConnectionLost(self.endpoint, f"protocol error from {self.endpoint}: {exc}"))
            return
        pending = self._pending
        for event in events:
            kind = type(event)
            if kind is Response:
                waiter = pending.pop(event.request_id, None)  # type: ignore[union-attr]
                if waiter is not None and not waiter.done():
                    waiter.set_result(event.payload)  # type: ignore[union-attr]
            elif kind is Error:
                assert isinstance(event, Error)
                error_waiter = pending.pop(event.request_id, None)
                if error_waiter is not None and not error_waiter.done():
                    error_waiter.set_exception(
                        ServerError(self.endpoint, event.kind, event.message)
                    )
            elif kind is Handshake:
                self.open = True
                if not self._handshake.done():
                    self._handshake.set_result(None)
            elif kind is Goodbye:
                assert isinstance(event, Goodbye)
                if event.kind == _kinds.HANDSHAKE_REFUSED:
                    core = self._core
                    self.fail(
                        HandshakeError(
                            f"{self.endpoint} refused the handshake of this client "
                            f"(deployment {core.deployment_id!r}, fingerprint "
                            f"{core.fingerprint.hex()[:16]}, call protocol version "
                            f"{core.version}): the server belongs to another deployment, "
                            "runs another version of the app, or speaks another protocol "
                            "version"
                        )
                    )
                else:
                    self.fail(
                        ConnectionLost(
                            self.endpoint,
                            f"{self.endpoint} closed the connection: {event.kind}: {event.message}",
                        )
                    )
                return
            else:  # ConnectionClosed
                self.fail(ConnectionLost(self.endpoint, f"{self.endpoint} closed the connection"))
                return
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if self.draining and not self._pending:
            self.close()

    def _is_open(self) -> bool:
        return self.open

    def _goodbye(self, kind: str, message: str) -> None:
        try:
            data = self._core.goodbye(kind, message)
        except LocalProtocolError:
            return
        self._write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport is gone."""
        reason = f": {exc}" if exc else ""
        self.fail(ConnectionLost(self.endpoint, f"connection to {self.endpoint} lost{reason}"))

    def fail(self, exc: BaseException) -> None:
        """Close, failing every call in flight with ``exc``'s story."""
        if self.failure is None:
            self.failure = exc
        self.open = False
        pending, self._pending = self._pending, {}
        self._expires.clear()
        if pending:
            lost = (
                exc
                if isinstance(exc, ConnectionLost)
                else ConnectionLost(self.endpoint, f"connection to {self.endpoint} failed: {exc}")
            )
            for waiter in pending.values():
                if not waiter.done():
                    waiter.set_exception(lost)
        if not self._handshake.done():
            self._handshake.set_result(exc)
        if self._driver is not None:
            self._driver.close()
        self.closed.set()

    def close(self) -> None:
        self.fail(NotSent(self.endpoint, f"connection to {self.endpoint} was closed"))

    def drain(self) -> None:
        """Take no new calls; close once the calls in flight are done."""
        self.draining = True
        if not self._pending:
            self.close()

    def expire(self, now: float) -> float:
        """Fail the calls whose default deadline is ``now`` or past with
        :class:`DefaultDeadlineExpired` (each then tells the server, as a cancelled call
        does); returns the earliest default deadline still ahead (inf: none).

        A call with a deadline of its own is bounded by its caller's cancel scope. The
        default deadline is not: a cancel scope per call costs a timer per call (about
        a tenth of a remote call's CPU), while one sweeper per client, waking when the
        oldest such call expires, bounds them all (:meth:`Client._expire`)."""
        expires = self._expires
        pending = self._pending
        while expires:
            request_id, expiry = next(iter(expires.items()))
            if expiry > now:
                return expiry
            del expires[request_id]
            waiter = pending.get(request_id)
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    DefaultDeadlineExpired(self.endpoint, f"no answer from {self.endpoint}")
                )
        return _INF

    async def call(
        self,
        key: bytes,
        deadline_us: int,
        payload: bytes,
        trace: TraceContext | None,
        metadata: Mapping[str, str] | None,
        *,
        expires: float = _INF,
    ) -> bytes:
        """One attempt: send the request, wait for its answer. ``expires``: the
        client's default deadline, when the call has none of its own (see
        :meth:`expire`).

        Raises NotSent, ConnectionLost, ServerError or DefaultDeadlineExpired; on
        cancellation tells the server.
        """
        if not self.open or self.draining:
            raise NotSent(self.endpoint, f"connection to {self.endpoint} is not open")
        driver = self._driver
        if driver is not None and driver.congested:
            with anyio.move_on_at(expires):
                await driver.drained()
            if not self.open:
                raise NotSent(self.endpoint, f"connection to {self.endpoint} is not open")
            if driver.congested:
                raise NotSent(self.endpoint, f"{self.endpoint} did not read requests in time")
        request_id = self._next_id
        self._next_id = request_id + 1
        try:
            frame = self._core.send_request(
                request_id, key, deadline_us, payload, trace=trace, metadata=metadata
            )
        except LocalProtocolError as exc:
            raise NotSent(self.endpoint, f"cannot send to {self.endpoint}: {exc}") from exc
        waiter: FutureLike[bytes] = self._new_future()
        pending = self._pending
        pending[request_id] = waiter
        self._write(frame)
        if len(pending) == 1:
            self.poke()  # a lone call: its answer is worth waiting for hot
        if expires != _INF:
            self._expires[request_id] = expires
        try:
            result = await waiter
        except BaseException:
            self._expires.pop(request_id, None)
            if pending.pop(request_id, None) is not None and self._is_open():
                # Cancelled while waiting: tell the server. Its answer is still coming
                # (every request gets one) and is ignored.
                self._write(self._core.send_cancel(request_id))
                self._close_if_drained()
            raise
        if expires != _INF:
            self._expires.pop(request_id, None)
        return result


def _nothing() -> None:
    pass


def _unattached(data: bytes) -> None:
    raise LocalProtocolError("session has no driver", code="no-driver")


# ------------------------------------------------------------------ server


@types.coroutine
def _drive(
    coroutine: Coroutine[Any, Any, None], yielded: Any, context: contextvars.Context
) -> Generator[Any, Any, None]:
    """Go on running ``coroutine`` (whose first step already ran and yielded
    ``yielded``) inside the current task, each step in ``context``. Equivalent to
    ``await coroutine`` had we not started it by hand."""
    send = coroutine.send
    throw = coroutine.throw
    run = context.run
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:
            try:
                yielded = run(throw, exc)
            except StopIteration:
                return
        else:
            try:
                yielded = run(send, value)
            except StopIteration:
                return


class ServerSession:
    """The server end of one connection (see the module docstring)."""

    __slots__ = (
        "_backend",
        "_cancelled",
        "_context",
        "_core",
        "_driver",
        "_handlers",
        "_handshake_timeout",
        "_queue",
        "_scopes",
        "_suspending",
        "_tasks",
        "_wakeup",
        "_warnings",
        "draining",
        "hit",
        "open",
        "peer_name",
        "poke",
    )

    def __init__(
        self,
        *,
        handlers: Mapping[bytes, Handler],
        deployment_id: str,
        fingerprint: bytes,
        max_frame: int,
        driver: Driver,
        backend: Backend,
        peer_name: str = "",
        max_handshake_frame: int = DEFAULT_MAX_HANDSHAKE_FRAME,
        handshake_timeout: float = math.inf,
        warnings: RateLimitedLog | None = None,
    ) -> None:
        self._core = Connection(
            Role.SERVER,
            deployment_id=deployment_id,
            fingerprint=fingerprint,
            max_frame=max_frame,
            max_handshake_frame=max_handshake_frame,
        )
        self._handshake_timeout = handshake_timeout
        self._warnings = warnings if warnings is not None else _default_warnings
        self._handlers = handlers
        self._driver = driver
        self._backend = backend
        self._queue: deque[Request] = deque()
        # The scopes of requests whose handler suspended (running in their own task).
        self._scopes: dict[int, Scope] = {}
        self._cancelled: set[int] = set()  # requests cancelled while still queued
        self._wakeup: FutureLike[None] | None = None  # the parked dispatcher's
        # Methods whose handler was seen to suspend: their requests get a task each
        # up front, instead of running inline and handing the queue over.
        self._suspending: set[bytes] = set()
        self._tasks = 0  # request tasks spawned and not finished
        # Handlers run in copies of this context: the one the server was started in.
        self._context = contextvars.copy_context()
        self.open = True
        self.draining = False  # answer new requests "unavailable"
        self.peer_name = peer_name
        #: Called when a lone request arrives (the server's spinner: see ``_spin``).
        self.poke: Callable[[], None] = _nothing
        self.hit: Callable[[], None] = _nothing  # bytes arrived (the spinner's)

    @property
    def busy(self) -> bool:
        """Requests queued or running (a request only runs past one loop iteration
        once its handler suspended, and then it has a scope here)."""
        return bool(self._queue or self._scopes or self._tasks)

    def backlog(self) -> int:
        """Requests received and not yet answered (drivers size write batches by it)."""
        return self._core.unanswered

    def _is_handshaken(self) -> bool:
        return self._core.state is State.OPEN

    def _peer(self) -> str:
        return self.peer_name or str(getattr(self._driver, "peer_name", "")) or "?"

    def start(self) -> None:
        self._driver.spawn(self._await_handshake)

    def set_handlers(self, handlers: Mapping[bytes, Handler]) -> None:
        """Serve ``handlers`` from now on (the server narrows them to what the peer
        may call once its TLS identity is known)."""
        self._handlers = handlers

    async def _await_handshake(self) -> None:
        """The first dispatcher: closes a connection that has not completed its
        handshake ``handshake_timeout`` seconds after it was made, then dispatches."""
        if not self._is_handshaken():
            backend = self._backend
            with backend.new_scope(backend.clock() + self._handshake_timeout):
                while self.open and not self._is_handshaken():
                    waiter: FutureLike[None] = backend.new_future()
                    self._wakeup = waiter
                    await waiter
            if not self.open:
                return
            if not self._is_handshaken():
                self._warnings.warning(
                    "handshake-timeout",
                    "closing call connection from %s: no handshake within %s s",
                    self._peer(),
                    self._handshake_timeout,
                )
                self.say_goodbye(_kinds.PROTOCOL, "no handshake in time")
                return
        await self._dispatch()

    def receive(self, data: ReadBytes) -> None:
        """Bytes from the client (``b""``: it closed the stream)."""
        if not self.open:
            return
        self.hit()
        try:
            events = self._core.receive_data(data)
        except HandshakeError as exc:
            self._warnings.warning(
                "handshake-refused", "refused call connection from %s: %s", self._peer(), exc
            )
            self.say_goodbye(_kinds.HANDSHAKE_REFUSED, REFUSED)
            return
        except RemoteProtocolError as exc:
            self._warnings.warning(
                f"protocol:{exc.code}", "closing call connection from %s: %s", self._peer(), exc
            )
            self.say_goodbye(_kinds.PROTOCOL, str(exc))
            return
        queue = self._queue
        for event in events:
            kind = type(event)
            if kind is Request:
                if self.draining:
                    self._driver.write(
                        self._core.send_error(
                            event.request_id,  # type: ignore[union-attr]
                            _kinds.UNAVAILABLE,
                            "the server is shutting down",
                        )
                    )
                elif self._tasks + len(self._scopes) + len(queue) >= MAX_REQUESTS_PER_CONNECTION:
                    # A peer that floods suspending methods must not grow tasks without
                    # bound; it gets a retriable refusal instead.
                    self._driver.write(
                        self._core.send_error(
                            event.request_id,  # type: ignore[union-attr]
                            _kinds.UNAVAILABLE,
                            f"over {MAX_REQUESTS_PER_CONNECTION} requests in flight "
                            "on one connection",
                        )
                    )
                else:
                    queue.append(event)  # type: ignore[arg-type]
            elif kind is Cancel:
                request_id = event.request_id  # type: ignore[union-attr]
                scope = self._scopes.get(request_id)
                if scope is not None:
                    scope.cancel()
                else:
                    self._cancelled.add(request_id)
            elif kind is Handshake:
                self._driver.write(self._core.hello())
                self._wake()  # the first dispatcher waits for it
            else:  # Goodbye, ConnectionClosed
                self.close()
                return
        if queue:
            self._wake()
            if len(queue) == 1 and self._core.unanswered == 1:
                self.poke()  # a lone request: its client likely sends the next soon

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None:
            self._wakeup = None
            if not waiter.done():
                waiter.set_result(None)

    def say_goodbye(self, kind: str, message: str) -> None:
        """Tell the client why, then close."""
        if self.open:
            try:
                self._driver.write(self._core.goodbye(kind, message))
            except LocalProtocolError:
                pass
        self.close()

    def close(self) -> None:
        """Cancel every handler, drop queued requests, close the transport."""
        if not self.open:
            return
        self.open = False
        self._queue.clear()
        for scope in list(self._scopes.values()):
            scope.cancel()
        self._wake()
        self._driver.close()

    async def _dispatch(self) -> None:
        queue = self._queue
        driver = self._driver
        backend = self._backend
        new_future = backend.new_future
        clock = backend.clock
        set_deadline = backend.set_deadline  # recorded, armed only if the handler suspends
        base_context = self._context
        # One cancel scope for this dispatcher's life (entering and leaving an anyio
        # scope costs about as much as the rest of a request's dispatch): each request
        # sets its deadline on it before it runs, so anyio/trio code in the handler
        # sees it, and the one request that suspends keeps the scope, and this task,
        # for itself. Its deadline is back at infinity whenever the dispatcher parks.
        scope = backend.new_scope(_INF)
        deadline = _INF
        handed_off: Request | None = None
        with scope:
            while self.open:
                if not queue:
                    if deadline != _INF:
                        deadline = _INF
                        set_deadline(scope, _INF)
                    waiter: FutureLike[None] = new_future()
                    self._wakeup = waiter
                    await waiter
                    continue
                driver.cork()
                while queue:
                    request = queue.popleft()
                    if request.method_key in self._suspending:
                        self._tasks += 1
                        driver.spawn(partial(self._run_in_task, request))
                        continue
                    if request.deadline_us:
                        deadline = clock() + request.deadline_us / 1e6
                        set_deadline(scope, deadline)
                    elif deadline != _INF:
                        deadline = _INF
                        set_deadline(scope, _INF)
                    runner = self._run(request)
                    context = base_context.copy()
                    try:
                        yielded = context.run(runner.send, None)
                    except StopIteration:
                        continue
                    except BaseException:
                        driver.uncork()
                        self.close()
                        raise
                    # The handler suspended. This task now belongs to it; a fresh
                    # dispatcher takes over the queue. Its deadline is armed now (it
                    # cancels at once if it passed while the handler ran).
                    if deadline != _INF:
                        scope.deadline = deadline
                    driver.uncork()
                    handed_off = request
                    self._suspending.add(request.method_key)
                    self._scopes[request.request_id] = scope
                    driver.spawn(self._dispatch)
                    try:
                        await _drive(runner, yielded, context)
                    finally:
                        del self._scopes[request.request_id]
                    break
                if handed_off is not None:
                    break  # this task went with the handler that suspended
                driver.uncork()
        if handed_off is not None and scope.cancelled_caught:
            self._answer_cancelled(handed_off, deadline)

    async def _run_in_task(self, request: Request) -> None:
        """Run one request in a task of its own, under its own cancel scope."""
        request_id = request.request_id
        backend = self._backend
        deadline = backend.clock() + request.deadline_us / 1e6 if request.deadline_us else _INF
        try:
            with backend.new_scope(deadline) as scope:
                self._scopes[request_id] = scope
                try:
                    runner = self._run(request)
                    context = self._context.copy()
                    try:
                        yielded = context.run(runner.send, None)
                    except StopIteration:
                        # It did not suspend this time (it suspended once while, say,
                        # its component was still being built): run it inline again.
                        self._suspending.discard(request.method_key)
                    else:
                        await _drive(runner, yielded, context)
                finally:
                    del self._scopes[request_id]
            if scope.cancelled_caught:
                self._answer_cancelled(request, deadline)
        finally:
            self._tasks -= 1

    def _answer_cancelled(self, request: Request, deadline: float) -> None:
        if request.deadline_us and self._backend.clock() >= deadline:
            failure = (_kinds.DEADLINE, f"deadline of {request.deadline_us} µs exceeded")
        else:
            failure = (_kinds.CANCELLED, "cancelled by the client")
        self._answer(request.request_id, None, failure)

    async def _run(self, request: Request) -> None:
        """Run one request's handler and answer it (except when the request is
        cancelled while it runs: then the dispatcher that owns its scope answers)."""
        request_id = request.request_id
        if self._cancelled and request_id in self._cancelled:
            self._cancelled.discard(request_id)
            self._answer(request_id, None, (_kinds.CANCELLED, "cancelled before it started"))
            return
        handler = self._handlers.get(request.method_key)
        if handler is None:
            self._answer(
                request_id,
                None,
                (_kinds.UNKNOWN_METHOD, f"no handler for method key {request.method_key.hex()}"),
            )
            return
        if request.metadata:
            _metadata.install(request.metadata)  # our private context: no reset needed
        if request.trace is not None and _tracing.state.enabled:
            _tracing.attach(request.trace)
        try:
            result = await handler(request.payload)
        except Unavailable as exc:
            self._answer(request_id, None, (_kinds.UNAVAILABLE, str(exc) or "not ready"))
        except NotAuthorized:
            self._answer(request_id, None, (_kinds.NOT_AUTHORIZED, "not authorized"))
        except Exception as exc:
            _log.debug("handler for %s failed", request.method_key.hex(), exc_info=True)
            self._answer(request_id, None, (_kinds.INTERNAL, f"{type(exc).__qualname__}: {exc}"))
        else:
            self._answer(request_id, result, None)

    def _answer(self, request_id: int, result: object, failure: tuple[str, str] | None) -> None:
        if not self.open:
            return
        if failure is None and type(result) is not bytes:
            if isinstance(result, bytearray | memoryview):
                result = bytes(result)
            else:
                failure = (
                    _kinds.INTERNAL,
                    f"handler returned {type(result).__qualname__}, not bytes",
                )
        if failure is None:
            data = self._core.send_response(request_id, result)  # type: ignore[arg-type]
        else:
            data = self._core.send_error(request_id, failure[0], failure[1])
        self._driver.write(data)
