"""The call client: one multiplexed connection per server endpoint, a balancer over the
live ones, reconnects, deadlines, cancellation and bounded retries.

::

    async with call.Client(["tcp://127.0.0.1:9000"], deployment_id=..., fingerprint=...) as client:
        payload = await client.call(key, payload, retriable=True, shard_key=0)

Theory of operation
===================

Every endpoint has a *manager* task (in the client's task group) that connects,
handshakes, keeps the connection while it lives and reconnects with exponential backoff
and jitter when it breaks. An endpoint is *live* while its connection is open; the
balancer picks among the live ones, in the order they were given.

A call is one or more *attempts*. Each attempt sends the caller's remaining deadline
(``anyio.current_effective_deadline()``), the current ``weaver.metadata`` and, when
tracing is on, the current span context. What happens when an attempt fails:

=====================================  ==========================================
failure                                then
=====================================  ==========================================
no live endpoint                       wait for one (at most ``replica_wait`` seconds
                                       per call, and never past the deadline), then
                                       ``RetriableError``
not written (connection was closing)   retry: the method did not run
server answered ``unavailable``        retry: the method did not run
connection broke after sending         retry if ``retriable`` (at-least-once),
                                       else ``RemoteCallError``
any other server error                 ``RemoteCallError`` (never retried)
=====================================  ==========================================

Retries back off (:func:`._retry.backoff_delay`), are bounded by ``max_attempts``, by
the client's retry budget and by the caller's deadline; when they run out the last
failure is raised as ``RetriableError`` (the method did not run) or ``RemoteCallError``.
Removing an endpoint (:meth:`Client.update_endpoints`) takes it out of the balancer at
once; the calls already in flight on it complete, then its connection closes.

No call waits forever on a peer that stopped answering (a SIGSTOPped process, a host
gone without a FIN):

- ``call_timeout``: a call made with no deadline of its own gets this one (it is then
  sent to the server too, like any deadline); past it, ``RemoteCallError``.
- keepalive: a connection that has received nothing for ``keepalive_interval`` seconds
  is sent a probe (a request for a method no server has, answered at once by any live
  server); if still nothing has arrived ``keepalive_timeout`` seconds later, the
  connection is declared lost: its calls fail as on a broken connection (retriable ones
  are retried elsewhere) and the endpoint reconnects with backoff.

The balancer may ask :meth:`Client.in_flight` for an endpoint's calls in flight (a
dictionary lookup and a ``len``), to prefer the least loaded replica.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from pyweaver._errors import RemoteCallError, RetriableError
from pyweaver.call import _anyio_driver, _asyncio_driver, _kinds, _metadata, _tracing
from pyweaver.call._backend import current_backend
from pyweaver.call._balancer import Balancer, RoundRobin
from pyweaver.call._retry import RetryBudget, RetryPolicy, backoff_delay
from pyweaver.call._server import DriverName
from pyweaver.call._session import (
    CallFailure,
    ClientSession,
    ConnectionLost,
    DefaultDeadlineExpired,
    ServerError,
)
from pyweaver.call._spin import Spinner, spin_window
from pyweaver.call._transport import Address, parse_address
from pyweaver.call._wire import DEFAULT_MAX_FRAME

__all__ = ["Client"]

_INF = math.inf


_DEADLINE_SLACK = 0.01  # seconds; see _after_failure

#: Seconds without any byte from a server before it is probed, and then before the
#: connection is declared lost (see the module docstring).
DEFAULT_KEEPALIVE_INTERVAL = 5.0
DEFAULT_KEEPALIVE_TIMEOUT = 10.0


class _Endpoint:
    """One server endpoint the client wants (or is draining)."""

    __slots__ = ("address", "endpoint", "last_error", "scope", "session", "wanted")

    def __init__(self, endpoint: str, address: Address) -> None:
        self.endpoint = endpoint
        self.address = address
        self.wanted = True
        self.session: ClientSession | None = None
        self.last_error: BaseException | None = None
        self.scope = anyio.CancelScope()


class Client(anyio.AsyncContextManagerMixin):
    """Calls to a set of server endpoints (see the module docstring).

    Args:
        endpoints: endpoint strings (``tcp://``, ``unix://``, ``mem://``).
        deployment_id, fingerprint: must match the servers' (checked at handshake).
        balancer: picks an endpoint per call (default :class:`RoundRobin`).
        max_frame: the largest frame accepted from a server.
        retry: backoff, attempt and budget bounds for retries and reconnects.
        replica_wait: how long a call waits, at most, for some endpoint to be live.
        connect_timeout: bound on one connect + handshake.
        driver: "auto" (asyncio Protocol on asyncio for tcp/unix, anyio streams
            otherwise), or force "protocol" / "streams".
        ssl_context: connect over TLS with it (mutual TLS: see ``docs/security.md``).
        call_timeout: the deadline, in seconds, of a call made without one (None: such
            a call may wait as long as its server takes).
        keepalive_interval, keepalive_timeout: probe a server silent for this long, and
            declare its connection lost when the probe gets no answer within the timeout
            (``keepalive_interval=None``: never probe).
        spin: seconds the event loop keeps polling after a request goes out, so a
            quick answer is read without waking the process (``_spin``; None: the
            ``PYWEAVER_SPIN_US`` environment variable, else 100 µs, 250 µs on trio; 0: off).
    """

    def __init__(
        self,
        endpoints: Iterable[str] = (),
        *,
        deployment_id: str,
        fingerprint: bytes,
        balancer: Balancer | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        retry: RetryPolicy | None = None,
        replica_wait: float = 5.0,
        connect_timeout: float = 5.0,
        driver: DriverName = "auto",
        ssl_context: ssl.SSLContext | None = None,
        call_timeout: float | None = None,
        keepalive_interval: float | None = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        spin: float | None = None,
    ) -> None:
        spin_window(spin)  # a bad PYWEAVER_SPIN_US is refused now, by name
        self._spin = spin
        self._spinner: Spinner | None = None  # made when it runs (see spin_window)
        if call_timeout is not None and call_timeout <= 0:
            raise ValueError(f"call_timeout must be positive, got {call_timeout}")
        if keepalive_interval is not None and (keepalive_interval <= 0 or keepalive_timeout <= 0):
            raise ValueError("keepalive_interval and keepalive_timeout must be positive")
        self.call_timeout = call_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.deployment_id = deployment_id
        self.ssl_context = ssl_context
        self.fingerprint = bytes(fingerprint)
        self.max_frame = max_frame
        self._balancer: Balancer = balancer if balancer is not None else RoundRobin()
        self._retry = retry if retry is not None else RetryPolicy()
        self._budget = RetryBudget(self._retry)
        self._replica_wait = replica_wait
        self._connect_timeout = connect_timeout
        self._driver = driver
        self._use_protocol = False
        self._initial = list(dict.fromkeys(endpoints))
        for endpoint in self._initial:
            parse_address(endpoint)  # fail early on a malformed endpoint
        self._order: tuple[str, ...] = ()
        self._endpoints: dict[str, _Endpoint] = {}
        self._draining: dict[str, _Endpoint] = {}
        self._live: dict[str, ClientSession] = {}
        self._ready: tuple[str, ...] = ()
        self._changed = anyio.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._calls = 0  # calls made, for the retry budget
        self._effective_deadline: Callable[[], float] = anyio.current_effective_deadline
        self._clock: Callable[[], float] = anyio.current_time

    # -------------------------------------------------------------- lifecycle

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        backend = current_backend()
        self._use_protocol = backend.name == "asyncio" and self._driver != "streams"
        self._clock = backend.clock
        self._effective_deadline = backend.effective_deadline
        if self._driver == "protocol" and backend.name != "asyncio":
            raise ValueError("the protocol driver needs asyncio")
        window = spin_window(self._spin, backend.name)
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            if window > 0:
                self._spinner = Spinner(window)
                task_group.start_soon(self._spinner.run, backend)
            self.update_endpoints(self._initial)
            if self.call_timeout is not None:
                task_group.start_soon(self._expire)
            try:
                yield self
            finally:
                self._close()
                task_group.cancel_scope.cancel()

    def _close(self) -> None:
        self._closed = True
        for endpoint in [*self._endpoints.values(), *self._draining.values()]:
            endpoint.wanted = False
            endpoint.scope.cancel()
            if endpoint.session is not None:
                endpoint.session.close()
        self._live.clear()
        self._ready = ()
        self._changed.set()

    # -------------------------------------------------------------- endpoints

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints the client is to use (not counting ones draining)."""
        return self._order

    def in_flight(self, endpoint: str) -> int:
        """Calls in flight on ``endpoint``'s connection now (0 if it has none)."""
        session = self._live.get(endpoint)
        return len(session._pending) if session is not None else 0

    @property
    def ready(self) -> tuple[str, ...]:
        """The endpoints with a live connection, in order."""
        return self._ready

    def update_endpoints(self, endpoints: Iterable[str]) -> None:
        """Use exactly ``endpoints`` from now on. New ones are connected; removed ones
        get no new calls and close once their calls in flight are done."""
        if self._task_group is None:
            self._initial = list(dict.fromkeys(endpoints))
            return
        if self._closed:
            raise RuntimeError("the client is closed")
        wanted = list(dict.fromkeys(endpoints))
        addresses = {endpoint: parse_address(endpoint) for endpoint in wanted}
        self._order = tuple(wanted)
        for endpoint in [e for e in self._endpoints if e not in addresses]:
            state = self._endpoints.pop(endpoint)
            state.wanted = False
            session = state.session
            if session is not None and session.in_flight:
                self._draining[endpoint] = state
                session.drain()
            else:
                state.scope.cancel()
                if session is not None:
                    session.close()
        for endpoint, address in addresses.items():
            if endpoint in self._endpoints:
                continue
            state_or_none = self._draining.pop(endpoint, None)
            if state_or_none is not None and state_or_none.session is not None:
                session = state_or_none.session
                if session.open and session.draining:
                    # Back before it finished draining: keep its connection.
                    session.draining = False
                    state_or_none.wanted = True
                    self._endpoints[endpoint] = state_or_none
                    continue
            state = _Endpoint(endpoint, address)
            self._endpoints[endpoint] = state
            self._task_group.start_soon(self._manage, state)
        self._recompute_live()

    def _recompute_live(self) -> None:
        live = {}
        for endpoint in self._order:
            state = self._endpoints.get(endpoint)
            if state is not None and state.session is not None and state.session.open:
                live[endpoint] = state.session
        self._live = live
        self._ready = tuple(live)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_ready(self, count: int = 1) -> None:
        """Return once at least ``count`` endpoints are live (use a timeout around it)."""
        while len(self._ready) < count:
            await self._changed.wait()

    async def _connect(self, state: _Endpoint) -> tuple[ClientSession, Callable[[], Any]]:
        options: dict[str, Any] = {
            "deployment_id": self.deployment_id,
            "fingerprint": self.fingerprint,
            "max_frame": self.max_frame,
            "ssl_context": self.ssl_context,
        }
        if self._use_protocol and state.address.scheme != "mem":
            session = await _asyncio_driver.connect(state.address, state.endpoint, **options)
            pump = session.closed.wait
        else:
            session, driver = await _anyio_driver.connect(
                state.address, state.endpoint, **options
            )
            pump = driver.run
        if self._spinner is not None:
            self._spinner.attach(session)
        return session, pump

    async def _manage(self, state: _Endpoint) -> None:
        """Keep ``state``'s connection up while it is wanted."""
        failures = 0
        try:
            with state.scope:
                while state.wanted:
                    try:
                        with anyio.fail_after(self._connect_timeout):
                            session, pump = await self._connect(state)
                    except Exception as exc:
                        state.last_error = exc
                        failures += 1
                        await anyio.sleep(backoff_delay(self._retry, failures))
                        continue
                    failures = 0
                    state.session = session
                    state.last_error = None
                    self._recompute_live()
                    try:
                        if self.keepalive_interval is None:
                            await pump()
                        else:
                            async with anyio.create_task_group() as keeping:
                                keeping.start_soon(self._keepalive, session)
                                await pump()
                                keeping.cancel_scope.cancel()
                    finally:
                        state.session = None
                        session.close()
                        if isinstance(session.failure, ConnectionLost):
                            state.last_error = session.failure
                        self._recompute_live()
                    if state.wanted:
                        failures += 1
                        await anyio.sleep(backoff_delay(self._retry, failures))
        finally:
            if self._draining.get(state.endpoint) is state:
                del self._draining[state.endpoint]

    async def _keepalive(self, session: ClientSession) -> None:
        """Declare ``session`` lost when its server stays silent (module docstring)."""
        assert self.keepalive_interval is not None
        seen = session.received
        while session.open:
            await anyio.sleep(self.keepalive_interval)
            if session.received != seen:
                seen = session.received
                continue
            session.probe()
            await anyio.sleep(self.keepalive_timeout)
            if session.received == seen and session.open:
                silent = self.keepalive_interval + self.keepalive_timeout
                session.fail(
                    ConnectionLost(
                        session.endpoint,
                        f"{session.endpoint} sent nothing for {silent:g} s and did not "
                        "answer a keepalive probe",
                    )
                )
                return
            seen = session.received

    # -------------------------------------------------------------- calls

    async def call(
        self,
        method_key: bytes,
        payload: bytes,
        *,
        retriable: bool = True,
        shard_key: int = 0,
    ) -> bytes:
        """Call the method named by ``method_key`` (see :func:`method_key`) with
        ``payload``; returns the response payload.

        Raises:
            RetriableError: the method did not run (no live replica within the bounded
                wait, or every attempt failed before it could run).
            RemoteCallError: a system failure after which the method may have run.
        """
        if self._closed:
            raise RemoteCallError("the call client is closed")
        self._calls += 1
        metadata = _metadata.current() or None
        trace = _tracing.current() if _tracing.state.enabled else None
        effective_deadline = self._effective_deadline
        clock = self._clock
        attempt = 1
        replica_wait_until = -_INF
        expires = _INF  # the default deadline (call_timeout), if the call has none
        while True:
            deadline = effective_deadline()
            if deadline == _INF and self.call_timeout is not None and expires == _INF:
                # The first attempt of a call with no deadline: one clock read.
                expires = deadline = clock() + self.call_timeout
                deadline_us = int(self.call_timeout * 1e6) or 1
            elif deadline == _INF and expires == _INF:
                deadline_us = 0
            else:
                deadline = min(deadline, expires)
                remaining = deadline - clock()
                if remaining <= 0:
                    await anyio.lowlevel.checkpoint()  # the caller's scope cancels here
                    if deadline == expires:
                        raise self._default_deadline_error(method_key)
                    raise RetriableError(
                        f"deadline expired before calling method {method_key.hex()}; not sent"
                    )
                # Truncated: the server never gets more time than the caller has.
                deadline_us = int(remaining * 1e6) or 1
            ready = self._ready
            endpoint = self._balancer.pick(ready, shard_key) if ready else None
            session = self._live.get(endpoint) if endpoint is not None else None
            if session is None:
                if replica_wait_until == -_INF:
                    replica_wait_until = min(clock() + self._replica_wait, expires)
                await self._wait_for_replica(method_key, replica_wait_until)
                continue
            try:
                return await session.call(
                    method_key, deadline_us, payload, trace, metadata, expires=expires
                )
            except CallFailure as exc:
                await self._after_failure(
                    exc, method_key, retriable, attempt, deadline=deadline, expires=expires
                )
            attempt += 1

    def _default_deadline_error(self, method_key: bytes) -> RemoteCallError:
        return RemoteCallError(
            f"call of method {method_key.hex()} got no answer within the default call "
            f"deadline of {self.call_timeout:g} s (the method may have run)"
        )

    async def _expire(self) -> None:
        """Fail the calls past the default deadline (:meth:`ClientSession.expire`).
        Wakes when the oldest such call expires, or once per ``call_timeout`` when
        there is none: a call made later expires later."""
        assert self.call_timeout is not None
        clock = self._clock
        while True:
            now = clock()
            wake = now + self.call_timeout
            for state in [*self._endpoints.values(), *self._draining.values()]:
                if state.session is not None:
                    wake = min(wake, state.session.expire(now))
            await anyio.sleep_until(wake)

    async def _after_failure(
        self,
        failure: CallFailure,
        key: bytes,
        retriable: bool,
        attempt: int,
        *,
        deadline: float,
        expires: float,
    ) -> None:
        """Raise the error for a failed attempt, or back off before the next one."""
        if self._closed:
            raise RemoteCallError(f"the call client closed during a call: {failure}") from failure
        if isinstance(failure, DefaultDeadlineExpired) or (
            deadline == expires
            and isinstance(failure, ServerError)
            and failure.kind == _kinds.DEADLINE
        ):
            raise self._default_deadline_error(key) from None
        if isinstance(failure, ConnectionLost) and not retriable:
            raise RemoteCallError(
                f"call of method {key.hex()} on {failure.endpoint} failed: {failure.message} "
                "(the method may have run; it is not retriable)"
            ) from failure
        if isinstance(failure, ServerError) and failure.kind not in _kinds.RETRIABLE_KINDS:
            if failure.kind == _kinds.DEADLINE and deadline != _INF:
                # The server gave up at the same deadline we have: let the caller's own
                # scope cancel it, as a local call would be. (The slack lets that scope's
                # timer fire first on loops with millisecond clocks, such as uvloop.)
                await anyio.sleep_until(deadline + _DEADLINE_SLACK)
            raise RemoteCallError(
                f"call of method {key.hex()} on {failure.endpoint} failed: {failure.message}"
            ) from failure
        if attempt >= self._retry.max_attempts or not self._budget.try_withdraw(self._calls):
            raise RetriableError(
                f"call of method {key.hex()} failed after {attempt} attempt(s); last: {failure}"
            ) from failure
        await anyio.sleep(backoff_delay(self._retry, attempt))

    async def _wait_for_replica(self, key: bytes, until: float) -> None:
        if self._closed:
            raise RemoteCallError("the call client is closed")
        remaining = until - self._clock()
        if remaining > 0:
            with anyio.move_on_after(remaining):
                await self._changed.wait()
            return
        raise RetriableError(
            f"no reachable replica for method {key.hex()} after {self._replica_wait:g} s: "
            + self._describe_endpoints()
        )

    def _describe_endpoints(self) -> str:
        if not self._endpoints:
            return "the client has no endpoints"
        parts = []
        for endpoint, state in list(self._endpoints.items())[:8]:
            if state.session is not None and state.session.open:
                status = "live"
            elif state.last_error is not None:
                status = str(state.last_error) or type(state.last_error).__name__
            else:
                status = "connecting"
            parts.append(f"{endpoint} ({status})")
        more = len(self._endpoints) - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")

    def __repr__(self) -> str:
        return f"<pyweaver.call.Client live={list(self._ready)} endpoints={list(self._order)}>"
