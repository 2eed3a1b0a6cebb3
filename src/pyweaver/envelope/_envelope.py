"""The envelope: the deployer's handle on one weavelet.

An :class:`Envelope` is an async context manager. Entering it

1. serves **DeployerControl** on a Unix socket of its own (``<socket_dir>/<name>.e``),
2. starts the weavelet through a :class:`Child` — a real process
   (:class:`ProcessChild`, whose stdout and stderr become log entries) or a coroutine in
   this process (:class:`InProcessChild`, for tests) — with the :class:`Bootstrap` in
   ``PYWEAVER_BOOTSTRAP``,
3. waits, bounded by ``ready_timeout``, for the weavelet's ``register`` call (or for the
   child to die first, which raises a :class:`~pyweaver.envelope._process.ProcessError`
   carrying its last output lines), and
4. connects a control client to the weavelet's **WeaveletControl** server.

Leaving it stops the weavelet (SIGTERM, grace period, SIGKILL for a process; cancel for
an in-process child), under a shield. The deployer reacts to the weavelet through an
:class:`EnvelopeHandler` and drives it with :meth:`Envelope.update_components`,
:meth:`Envelope.update_routing`, :meth:`Envelope.health` and :meth:`Envelope.metrics`.
A deployer is written against this API only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver.contract import _messages as m
from pyweaver.contract._bootstrap import BOOTSTRAP_ENV, Bootstrap, pack_config
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._tls import TlsFiles, identity_group
from pyweaver.envelope._process import (
    ChildProcess,
    ProcessExitedError,
    ProcessSpec,
    ReadinessTimeoutError,
)

__all__ = [
    "Child",
    "Envelope",
    "EnvelopeHandler",
    "InProcessChild",
    "ProcessChild",
    "RunningChild",
]


class EnvelopeHandler(Protocol):
    """The deployer's answers to a weavelet's DeployerControl calls."""

    def accept(self, envelope: Envelope, info: m.Register) -> str:
        """Check a registering weavelet ("" to accept, else why not)."""
        ...

    async def activate_component(
        self, envelope: Envelope, request: m.ActivateComponent
    ) -> m.RoutingInfo:
        """Make sure the component runs; reply with its group's routing info."""
        ...

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress: ...

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply: ...

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        """Log entries from the weavelet (batches, and its captured output lines).
        Called synchronously; must not block."""
        ...

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None: ...


def lone_exception(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception inside (nested) one-exception groups, else the group.

    anyio wraps even a lone exception that crosses a task group in a group; callers of
    the envelope want the weavelet's failure as itself.
    """
    lone: BaseException = errors
    while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
        lone = lone.exceptions[0]
    return lone


# -- children ---------------------------------------------------------------------------


class RunningChild(Protocol):
    """A started weavelet (process or coroutine)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def last_lines(self) -> list[tuple[str, str]]: ...

    async def wait(self) -> int: ...

    async def stop(self, grace: float | None = None) -> int: ...


LineCallback = Callable[[str, str], None]


class Child(Protocol):
    """How to start a weavelet. ``run`` returns an async context manager that starts
    it, returns once ``ready()`` returned (bounded by ``ready_timeout``) and stops it on
    exit; it raises a ProcessError if the weavelet dies or times out first."""

    def run(
        self,
        bootstrap: Bootstrap,
        *,
        on_line: LineCallback,
        ready: Callable[[], Awaitable[None]],
        ready_timeout: float,
    ) -> contextlib.AbstractAsyncContextManager[RunningChild]: ...


class ProcessChild:
    """A weavelet in a child process running ``argv`` with the bootstrap in its
    environment (``env`` default: ours)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_grace: float = 5.0,
        keep_lines: int = 50,
    ) -> None:
        self.argv = tuple(argv)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_grace = stop_grace
        self.keep_lines = keep_lines

    def run(
        self,
        bootstrap: Bootstrap,
        *,
        on_line: LineCallback,
        ready: Callable[[], Awaitable[None]],
        ready_timeout: float,
    ) -> contextlib.AbstractAsyncContextManager[RunningChild]:
        spec = ProcessSpec(
            argv=self.argv,  # type: ignore[arg-type]  # attrs converter=tuple confuses mypy
            env={**self.env, BOOTSTRAP_ENV: bootstrap.encode()},
            cwd=self.cwd,
            ready_timeout=ready_timeout,
            stop_grace=self.stop_grace,
            keep_lines=self.keep_lines,
            join_stderr=True,
        )

        async def ready_check(child: ChildProcess) -> None:
            await ready()

        return ChildProcess(spec, on_line=on_line, ready=ready_check)


class _InProcessRun:
    """A running in-process weavelet: the body runs in a task of this object's group."""

    def __init__(self, body: Callable[[Bootstrap], Awaitable[None]], bootstrap: Bootstrap) -> None:
        self._body = body
        self._bootstrap = bootstrap
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._returncode: int | None = None
        self._error: BaseException | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def last_lines(self) -> list[tuple[str, str]]:
        if self._error is None:
            return []
        error = self._error
        if isinstance(error, BaseExceptionGroup):
            error = lone_exception(error)
        text = "".join(traceback.format_exception(error)).rstrip("\n")
        return [("stderr", line) for line in text.split("\n")[-40:]]

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._body(self._bootstrap)
            self._returncode = 0 if not self._scope.cancelled_caught else -15
        except Exception as exc:
            self._error = exc
            self._returncode = 1
        finally:
            if self._returncode is None:
                self._returncode = -15
            self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        assert self._returncode is not None
        return self._returncode

    async def stop(self, grace: float | None = None) -> int:
        with anyio.CancelScope(shield=True):
            self._scope.cancel()
            status = await self.wait()
        return status


class InProcessChild:
    """A weavelet run as the coroutine ``body(bootstrap)`` in this process (tests and
    weavertest's main). ``body`` serves until cancelled."""

    def __init__(self, body: Callable[[Bootstrap], Awaitable[None]]) -> None:
        self.body = body

    @contextlib.asynccontextmanager
    async def run(
        self,
        bootstrap: Bootstrap,
        *,
        on_line: LineCallback,
        ready: Callable[[], Awaitable[None]],
        ready_timeout: float,
    ) -> AsyncIterator[RunningChild]:
        running = _InProcessRun(self.body, bootstrap)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(running._run)
                try:
                    error: Exception | None = None
                    with anyio.move_on_after(ready_timeout) as timeout:
                        async with anyio.create_task_group() as race:

                            async def until_ready() -> None:
                                nonlocal error
                                try:
                                    await ready()
                                except Exception as exc:
                                    error = exc
                                race.cancel_scope.cancel()

                            async def until_done() -> None:
                                await running.wait()
                                race.cancel_scope.cancel()

                            race.start_soon(until_ready)
                            race.start_soon(until_done)
                    if error is not None:
                        raise error
                    if running.returncode is not None:
                        raise ProcessExitedError(
                            "the in-process weavelet ended before it was ready",
                            argv=("<in-process>",),
                            returncode=running.returncode,
                            last_lines=running.last_lines,
                        )
                    if timeout.cancelled_caught:
                        raise ReadinessTimeoutError(
                            f"the in-process weavelet was not ready within {ready_timeout:g} s",
                            argv=("<in-process>",),
                            returncode=None,
                            last_lines=running.last_lines,
                        )
                    yield running
                finally:
                    await running.stop()
        except BaseExceptionGroup as errors:
            # anyio wraps even a lone exception of the body; callers want it as itself.
            raise lone_exception(errors) from None


# -- the envelope -----------------------------------------------------------------------


class Envelope(anyio.AsyncContextManagerMixin):
    """The deployer's handle on one weavelet (see the module docstring).

    Args:
        deployment_id, replica_id, group: the weavelet's identity.
        components: the components of its group (it hosts these).
        run_main: whether the weavelet runs the app's ``main``.
        config: the app's weaver.toml.
        app, sys_path: what a non-main weavelet imports (see :class:`Bootstrap`).
        child: how to start it.
        handler: the deployer's side of DeployerControl.
        socket_dir: a private directory for the Unix sockets (keep its path short:
            socket paths are limited to about 100 bytes).
        name: a short name, unique in ``socket_dir``, for this weavelet's sockets.
        ready_timeout: seconds to wait for the weavelet to register.
        tls: with mTLS, the deployer's certificate files (the envelope's side of the
            control channel); None: no TLS.
        weavelet_tls: with mTLS, the files of the weavelet's group (their paths go in
            its bootstrap).
        tls_callers: with mTLS, calling group -> the components of this group it may
            call (see :class:`~pyweaver.contract.Bootstrap`).
    """

    def __init__(
        self,
        *,
        deployment_id: str,
        replica_id: str,
        group: str,
        components: Sequence[str],
        run_main: bool,
        config: AppConfig,
        app: Sequence[str] = (),
        sys_path: Sequence[str] = (),
        backend: str = "",
        log_level: str = "info",
        trace_sample_ratio: float = 0.0,
        child: Child,
        handler: EnvelopeHandler,
        socket_dir: Path,
        name: str,
        ready_timeout: float = 30.0,
        tls: TlsFiles | None = None,
        weavelet_tls: TlsFiles | None = None,
        tls_callers: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if (tls is None) != (weavelet_tls is None):
            raise ValueError("mTLS needs both the deployer's and the weavelet's files")
        self.tls = tls
        self.deployment_id = deployment_id
        self.replica_id = replica_id
        self.group = group
        self.components = list(components)
        self.run_main = run_main
        self.child = child
        self.handler = handler
        self.ready_timeout = ready_timeout
        self.envelope_address = f"unix://{socket_dir / (name + '.e')}"
        self.bootstrap = Bootstrap(
            deployment_id=deployment_id,
            replica_id=replica_id,
            group=group,
            components=list(components),
            run_main=run_main,
            envelope_address=self.envelope_address,
            control_address=f"unix://{socket_dir / (name + '.c')}",
            data_address=f"unix://{socket_dir / (name + '.d')}",
            config=pack_config(config),
            app=list(app),
            sys_path=list(sys_path),
            backend=backend,
            log_level=log_level,
            trace_sample_ratio=trace_sample_ratio,
            tls_ca=weavelet_tls.ca if weavelet_tls else "",
            tls_cert=weavelet_tls.cert if weavelet_tls else "",
            tls_key=weavelet_tls.key if weavelet_tls else "",
            tls_callers={
                caller: list(components) for caller, components in (tls_callers or {}).items()
            },
        )
        self.info: m.Register | None = None
        self.started_at = 0.0
        self._registered = anyio.Event()
        self._register_error = ""
        self._running: RunningChild | None = None
        self._control: call.Client | None = None

    # -- identity ------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.info.pid if self.info is not None else 0

    @property
    def data_address(self) -> str:
        return self.info.data_address if self.info is not None else ""

    @property
    def fingerprint(self) -> bytes:
        return self.info.fingerprint if self.info is not None else b""

    @property
    def returncode(self) -> int | None:
        return self._running.returncode if self._running is not None else None

    @property
    def last_lines(self) -> list[tuple[str, str]]:
        return self._running.last_lines if self._running is not None else []

    def __repr__(self) -> str:
        return f"<Envelope {self.group}/{self.replica_id} pid={self.pid}>"

    # -- life ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Envelope]:
        # Each context shields its own cleanup (a shield around the whole stack would
        # be a cancel scope nested inside the scopes it has to exit).
        body_error: BaseException | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(
                    call.serve(
                        self.envelope_address,
                        self._deployer_control_handlers(),
                        deployment_id=self.deployment_id,
                        fingerprint=m.CONTROL_FINGERPRINT,
                        ssl_context=self.tls.server_context() if self.tls else None,
                        authorize=self._authorize_weavelet if self.tls else None,
                    )
                )
                starting = self.child.run(
                    self.bootstrap,
                    on_line=self._on_line,
                    ready=self._wait_registered,
                    ready_timeout=self.ready_timeout,
                )
                if isinstance(starting, ChildProcess):
                    # A process can be stopped while it starts (see stop()).
                    self._running = starting
                self._running = await stack.enter_async_context(starting)
                assert self.info is not None
                self._control = await stack.enter_async_context(
                    call.Client(
                        [self.info.control_address],
                        deployment_id=self.deployment_id,
                        fingerprint=m.CONTROL_FINGERPRINT,
                        ssl_context=self.tls.client_context() if self.tls else None,
                    )
                )
                self.started_at = time.time()
                try:
                    yield self
                except BaseException as exc:
                    body_error = exc
                    raise
        except BaseExceptionGroup as errors:
            if errors is body_error:
                raise  # the caller's own group, as it was
            raise lone_exception(errors) from None

    def _authorize_weavelet(self, identity: str | None) -> frozenset[bytes] | None:
        """DeployerControl answers the weavelets of this envelope's group only."""
        if identity_group(identity, self.deployment_id) == self.group:
            return None
        return frozenset()

    async def _wait_registered(self) -> None:
        await self._registered.wait()
        if self._register_error:
            raise PyWeaverError(f"weavelet {self.replica_id} refused: {self._register_error}")

    async def wait(self) -> int:
        """Wait for the weavelet to end; its exit status (negative: killed by a signal)."""
        assert self._running is not None, "the envelope has not started"
        return await self._running.wait()

    async def stop(self, grace: float | None = None) -> int | None:
        """Stop the weavelet now (SIGTERM, ``grace``, SIGKILL); its exit status, or
        None if it has not been started yet. A process that is still starting is
        stopped too (entering the envelope then fails), so a deployer can stop every
        weavelet without cancelling their start."""
        if self._running is None:
            return None
        return await self._running.stop(grace)

    # -- envelope -> weavelet ------------------------------------------------------------

    async def _call(self, method: m.ControlMethod[Any, Any], request: object) -> Any:
        if self._control is None:
            raise PyWeaverError(f"{self!r} is not running")
        reply = await self._control.call(method.key, m.encode(request))
        return m.decode(method.reply, reply)

    async def update_components(self, components: Sequence[str]) -> None:
        """Tell the weavelet to host (build) ``components``."""
        await self._call(m.UPDATE_COMPONENTS, m.UpdateComponents(components=list(components)))

    async def update_routing(self, info: m.RoutingInfo) -> None:
        """Push new routing info for one group."""
        await self._call(m.UPDATE_ROUTING, info)

    async def health(self) -> m.Health:
        result: m.Health = await self._call(m.GET_HEALTH, m.Empty())
        return result

    async def metrics(self) -> list[dict[str, Any]]:
        result: m.MetricsReply = await self._call(m.GET_METRICS, m.Empty())
        return result.samples

    async def request_shutdown(self) -> None:
        """Ask the weavelet to run its shutdown hooks and exit."""
        await self._call(m.SHUTDOWN, m.Empty())

    # -- weavelet -> envelope ------------------------------------------------------------

    def _deployer_control_handlers(self) -> dict[bytes, Callable[[bytes], Awaitable[bytes]]]:
        handler = self.handler

        async def register(info: m.Register) -> m.RegisterReply:
            if info.replica_id != self.replica_id:
                error = f"replica id {info.replica_id!r} is not {self.replica_id!r}"
            else:
                error = handler.accept(self, info)
            if not self._registered.is_set():
                self.info = info
                self._register_error = error
                self._registered.set()
            return m.RegisterReply(error=error)

        async def activate(request: m.ActivateComponent) -> m.RoutingInfo:
            return await handler.activate_component(self, request)

        async def listener_address(request: m.ListenerAddressRequest) -> m.ListenerAddress:
            return await handler.get_listener_address(self, request)

        async def export(request: m.ExportListener) -> m.ExportListenerReply:
            return await handler.export_listener(self, request)

        async def logs(batch: m.LogBatch) -> m.Empty:
            handler.handle_logs(self, batch.entries)
            return m.Empty()

        async def spans(batch: m.TraceSpans) -> m.Empty:
            handler.handle_spans(self, batch.spans)
            return m.Empty()

        return {
            m.REGISTER.key: m.REGISTER.handler(register),
            m.ACTIVATE_COMPONENT.key: m.ACTIVATE_COMPONENT.handler(activate),
            m.GET_LISTENER_ADDRESS.key: m.GET_LISTENER_ADDRESS.handler(listener_address),
            m.EXPORT_LISTENER.key: m.EXPORT_LISTENER.handler(export),
            m.LOG_BATCH.key: m.LOG_BATCH.handler(logs),
            m.TRACE_SPANS.key: m.TRACE_SPANS.handler(spans),
        }

    def _on_line(self, stream: str, line: str) -> None:
        """What the weavelet process wrote on stdout or stderr becomes a log entry: one
        line, or one multi-line stderr message (a traceback becomes one error entry
        whose message is the exception line and whose ``traceback`` attribute is the
        whole text)."""
        if line.startswith(m.LOG_LINE_PREFIX):
            try:
                wire = json.loads(line[len(m.LOG_LINE_PREFIX) :])
                entry = LogEntry.from_wire(wire)
            except (ValueError, TypeError):
                pass  # not ours after all: keep the line as it is
            else:
                self.handler.handle_logs(self, [entry])
                return
        level = "info" if stream == "stdout" else "warning"
        message = line
        attrs: dict[str, str] = {}
        if "\n" in line and _is_traceback(line):
            level = "error"
            attrs["traceback"] = line
            message = _exception_line(line)
        entry = LogEntry(
            time_ns=time.time_ns(),
            level=level,
            message=message,
            replica=self.replica_id,
            group=self.group,
            deployment=self.deployment_id,
            attrs=attrs,
            source=stream,
        )
        self.handler.handle_logs(self, [entry])


_TRACEBACK_HEADS = (
    "Traceback (most recent call last):",
    "Exception Group Traceback (most recent call last):",
)


def _is_traceback(text: str) -> bool:
    return any(line.lstrip(" +|").startswith(_TRACEBACK_HEADS) for line in text.split("\n", 2)[:2])


def _exception_line(text: str) -> str:
    """The last unindented line of a traceback (``ValueError: boom``), else its first."""
    lines = text.split("\n")
    for line in reversed(lines):
        if line.strip() and line[:1] not in (" ", "\t"):
            return line
    return lines[0].strip()
