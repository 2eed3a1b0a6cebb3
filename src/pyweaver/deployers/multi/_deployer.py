"""The multiprocess deployer: an app as many weavelet processes on one machine.

Theory of operation
===================

**Groups.** Components are placed in colocation groups: each ``colocate`` entry of
weaver.toml is a group named by its first component, every other component is a group
of its own, and ``main`` belongs to the group that lists it (else a group ``main``).
Each group runs ``replicas`` weavelets (default 2, ``[multi] replicas``; the main group
defaults to 1 so that ``main`` runs once), each in its own envelope. A replica *slot*
(``group#0``, ``group#1`` ...) outlives the weavelets that fill it: a crashed weavelet
is replaced in the same slot.

**Lazy start.** The main group starts at deploy time. Every other group starts when
some weavelet first asks for one of its components (``activate_component``); the
answer waits (bounded) until one replica of the group is up and carries the group's
routing info. The asking weavelet is then a *subscriber* of the group: whenever the
group's live replicas change, the deployer pushes new routing info to every
subscriber, through one pusher task per weavelet that only ever sends the newest info.

**Routing.** Routed components (``WithRouter``) get a slot :class:`Assignment`: the key
space is owned by replica slots, so a weavelet that restarts in its slot gets back
exactly its keys; while it is down, callers route its keys to a live stand-in chosen by
the key. The assignment changes only when the number of slots changes
(:meth:`MultiDeployer.scale`), and then sticky, moving the fewest keys (the fraction
moved is logged and kept in :attr:`Group.moved_fractions`).

**Listeners.** Every replica binds its own ephemeral port; the deployer runs one TCP
(L4) proxy per listener name on the configured address (``[multi] listeners.NAME``,
else the app's ``ListenerOptions.local_address``, else any port), spreading connections
over the replicas' ports.

**Failures.** A weavelet that dies is restarted with exponential backoff and the
group's routing info is pushed without it meanwhile; ``max_crashes`` within ``window``
seconds is a crash loop: the group is *degraded* (status says why, with the weavelet's
last output lines) and the slot keeps being retried, every ``DEGRADED_RETRY`` seconds
at most, while every other group goes on serving. A weavelet that stops answering
health checks is taken out of rotation (routing info and proxies) until it answers
again (see ``_slots``). The deployer's own "too many open files" when starting a
weavelet is retried, never counted as a crash; at start the deployer raises its soft
open-file limit to the hard one. When the main weavelet exits, the deployment is over:
:meth:`wait` returns its exit status.

**Rooms.** Groups and slots are plain data (``_groups``); keeping slots filled and
restarting them is ``_slots`` (with :func:`pyweaver.envelope.supervise`); routing info
and assignments are ``_routing`` (pushed by ``_pusher``); listener proxies are
``_listeners``; logs, spans, status and metrics are ``_telemetry``. This module composes
them and answers the weavelets (it is every envelope's ``EnvelopeHandler``).

**mTLS** (``[multi] mtls = true``, see ``docs/security.md``). The deployer makes a CA
for the deployment and, on first need, a certificate per group (files 0600 in the
private socket directory); every control and data connection is then TLS, verified
both ways, and each group may call only the components its code references (``edges``:
the app's Ref edges; the main group may call every component).

**Stopping.** Leaving the ``async with`` stops the main group first (so ``shutdown``
hooks in main can still call other components), then every other weavelet at once:
SIGTERM, grace period, SIGKILL, under a shield.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from pyweaver._errors import CrashLoopError, DeploymentFailed, ProcessError
from pyweaver.contract import MAIN
from pyweaver.contract import messages as m
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._tls import TlsFiles, callers_of
from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers._proxy import TcpProxy
from pyweaver.deployers.multi import _routing
from pyweaver.deployers.multi._groups import DEFAULT_REPLICAS, Group, Slot, group_layout
from pyweaver.deployers.multi._listeners import Listeners
from pyweaver.deployers.multi._slots import HealthPolicy, SlotKeeper
from pyweaver.deployers.multi._telemetry import LogSink, SpanSink, Telemetry
from pyweaver.envelope import Child, Envelope, RestartPolicy
from pyweaver.envelope._process import raise_open_file_limit

__all__ = [
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "group_layout",
]

ACTIVATION_TIMEOUT: Final = 60.0  # seconds an activation waits for its group to come up
#: Seconds between attempts to refill a slot whose weavelet is in a crash loop: the
#: first retry comes after ``RestartPolicy.max_backoff``, doubling up to this.
DEGRADED_RETRY: Final = 60.0

ChildFactory = Callable[[str, bool], Child]
"""``factory(group, run_main)``: how to start a weavelet of ``group``."""


class MultiDeployer(anyio.AsyncContextManagerMixin):
    """Runs one deployment of an app as weavelet processes (see the module docstring).

    Args:
        config: the app's weaver.toml.
        child_factory: how to start a weavelet of a group.
        socket_dir: a private, short directory for Unix sockets.
        deployment_id: the deployment's id (default: a new UUID).
        app, sys_path, backend: what non-main weavelets import (see ``Bootstrap``).
        log_sink: receives every log entry of every weavelet.
        trace_sample_ratio: the fraction of traces the weavelets record (0: off).
        span_sink: receives the recorded spans (plain dicts) of every weavelet.
        default_replicas: replicas per group when weaver.toml does not say.
        main_replicas: replicas of the main group when weaver.toml does not say.
        restart: when to restart crashed weavelets and when to give up.
        ready_timeout: seconds a weavelet may take to come up.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping weavelets.
        components: the app's components (known up front with mTLS, whose
            authorization needs every group).
        edges: the app's Ref edges, [caller, callee] (mTLS authorization).
        health: how weavelets' health is checked (None: not at all).
    """

    def __init__(
        self,
        config: AppConfig,
        *,
        child_factory: ChildFactory,
        socket_dir: Path,
        deployment_id: str | None = None,
        app: Sequence[str] = (),
        sys_path: Sequence[str] = (),
        backend: str = "",
        log_sink: LogSink | None = None,
        log_level: str = "info",
        trace_sample_ratio: float = 0.0,
        span_sink: SpanSink | None = None,
        default_replicas: int = DEFAULT_REPLICAS,
        main_replicas: int = 1,
        main_components: Sequence[str] = (),
        restart: RestartPolicy | None = None,
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
        components: Sequence[str] = (),
        edges: Sequence[Sequence[str]] = (),
        health: HealthPolicy | None = HealthPolicy(),  # noqa: B008 (frozen)
    ) -> None:
        self.config = config
        self.child_factory = child_factory
        self.socket_dir = socket_dir
        self.deployment_id = deployment_id or str(uuid.uuid4())
        self.app = list(app)
        self.sys_path = list(sys_path)
        self.backend = backend
        self.log_level = log_level
        self.trace_sample_ratio = trace_sample_ratio
        self.telemetry = Telemetry(
            app=config.name,
            deployment_id=self.deployment_id,
            log_sink=log_sink,
            span_sink=span_sink,
        )
        self.default_replicas = default_replicas
        self.main_replicas = main_replicas
        self.restart = restart or RestartPolicy()
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.started = time.time()
        self.fingerprint: bytes | None = None
        self.groups: dict[str, Group] = {}
        self._layout = group_layout(config, components)
        for name in main_components:
            # Forced into main's group (weavertest's fakes live in the test process).
            for members in self._layout.values():
                if name in members:
                    members.remove(name)
        self._layout = {g: c for g, c in self._layout.items() if c}
        main_group = self._group_name_of(MAIN)
        self._layout[main_group] = [*self._layout[main_group], *main_components]
        self._component_group = {c: g for g, cs in self._layout.items() for c in cs}
        self.main_group = self._group(main_group)
        self._edges = [list(edge) for edge in edges]
        self._ca = DeploymentCA.create(self.deployment_id) if config.multi.mtls else None
        self._deployer_tls: TlsFiles | None = None
        self._group_tls: dict[str, TlsFiles] = {}
        self.listeners = Listeners(config, log=self._log_system, on_failure=self._fail)
        self._slots = SlotKeeper(
            new_envelope=self._new_envelope,
            policy=self.restart,
            stopping=lambda: self._stopping,
            on_up=self._replica_up,
            on_down=self._replica_down,
            log=self._log_system,
            health=health,
            on_health=self._replica_health,
        )
        self._sockets = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stopping = False
        self._done = anyio.Event()
        self._main_status: int | None = None
        self._failure: DeploymentFailed | None = None

    # -- layout -----------------------------------------------------------------------

    def _group_name_of(self, component: str) -> str:
        for group, members in self._layout.items():
            if component in members:
                return group
        self._layout[component] = [component]
        return component

    def _group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            is_main = MAIN in self._layout.get(name, [])
            if is_main:
                # main runs once unless the file names its group explicitly.
                configured = self.config.multi.group_replicas.get(name)
            else:
                configured = self.config.multi.replicas_for(name)
            default = self.main_replicas if is_main else self.default_replicas
            replicas = max(1, configured if configured is not None else default)
            group = Group(
                name=name,
                components=list(self._layout.get(name, [name])),
                replicas=replicas,
                is_main=is_main,
            )
            group.slots = [Slot(group=group, index=i) for i in range(replicas)]
            self.groups[name] = group
        return group

    def group_of(self, component: str) -> Group:
        return self._group(self._group_name_of(component))

    @property
    def log_sink(self) -> LogSink | None:
        """Receives every log entry of every weavelet (may be replaced at any time)."""
        return self.telemetry.log_sink

    @log_sink.setter
    def log_sink(self, sink: LogSink | None) -> None:
        self.telemetry.log_sink = sink

    @property
    def span_sink(self) -> SpanSink | None:
        """Receives the recorded spans of every weavelet (may be replaced at any time)."""
        return self.telemetry.span_sink

    @span_sink.setter
    def span_sink(self, sink: SpanSink | None) -> None:
        self.telemetry.span_sink = sink

    @property
    def proxies(self) -> dict[str, TcpProxy]:
        """The running listener proxies, by listener name."""
        return self.listeners.proxies

    # -- life -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[MultiDeployer]:
        raise_open_file_limit()
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop_all()
                    # Let every slot's task see its weavelet end and return by itself:
                    # one cancelled while its envelope unwinds would turn a weavelet's
                    # expected exit into an error of the whole deployer.
                    with anyio.move_on_after(self.stop_grace + 5.0):
                        for group in list(self.groups.values()):
                            for slot in group.slots:
                                if slot.task_started:
                                    await slot.finished.wait()
                task_group.cancel_scope.cancel()

    async def _stop_all(self) -> None:
        self._stopping = True
        # Main first, so its shutdown hooks can still reach the other groups.
        for first in (True, False):
            async with anyio.create_task_group() as stoppers:
                for group in self.groups.values():
                    if group.is_main != first:
                        continue
                    for slot in group.slots:
                        if slot.envelope is not None:
                            stoppers.start_soon(self._stop_slot, slot)

    async def _stop_slot(self, slot: Slot) -> None:
        envelope = slot.envelope
        if envelope is not None:
            await envelope.stop(self.stop_grace)

    async def start_main(self) -> None:
        """Start the main group (deploy time) and wait until it is up."""
        self.main_group.activated.add(MAIN)
        await self._ensure_started(self.main_group)
        await self._wait_ready(self.main_group)

    async def wait(self) -> int:
        """Wait until the deployment is over: main's exit status, or raise
        :class:`DeploymentFailed`."""
        await self._done.wait()
        if self._failure is not None:
            raise self._failure
        assert self._main_status is not None
        return self._main_status

    @property
    def stopping(self) -> bool:
        """Whether the deployment is being stopped."""
        return self._stopping

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _fail(self, error: DeploymentFailed) -> None:
        if self._failure is None and not self._done.is_set():
            self._failure = error
            self._log_system("error", str(error))
        self._done.set()

    # -- groups and replicas ----------------------------------------------------------

    async def _ensure_started(self, group: Group) -> None:
        if group.started:
            return
        group.started = True
        assert self._task_group is not None
        for slot in group.slots:
            self._start_slot(slot)

    async def _wait_ready(self, group: Group) -> None:
        with anyio.move_on_after(ACTIVATION_TIMEOUT):
            await group.ready.wait()
        if group.error:
            raise DeploymentFailed(group.error)
        if group.degraded and not group.live():
            raise DeploymentFailed(group.degraded)
        if not group.live():
            raise DeploymentFailed(
                f"group {group.name} did not come up within {ACTIVATION_TIMEOUT:g} s"
            )

    def _next_socket_name(self) -> str:
        self._sockets += 1
        return f"w{self._sockets}"

    def _start_slot(self, slot: Slot) -> None:
        assert self._task_group is not None
        slot.task_started = True
        self._task_group.start_soon(self._run_slot, slot)

    def _tls_for(self, group: str) -> tuple[TlsFiles, TlsFiles, dict[str, list[str]]] | None:
        """With mTLS: the deployer's files, ``group``'s (issued on first need) and who
        may call which of its components."""
        if self._ca is None:
            return None
        directory = self.socket_dir / "tls"
        if self._deployer_tls is None:
            directory.mkdir(mode=0o700, exist_ok=True)
            self._deployer_tls = self._ca.issue_deployer().write(directory, "deployer")
        files = self._group_tls.get(group)
        if files is None:
            stem = f"group-{len(self._group_tls)}"
            files = self._group_tls[group] = self._ca.issue_group(group).write(directory, stem)
        return self._deployer_tls, files, callers_of(group, self._layout, self._edges)

    def _new_envelope(self, slot: Slot) -> Envelope:
        group = slot.group
        tls = self._tls_for(group.name)
        return Envelope(
            deployment_id=self.deployment_id,
            replica_id=slot.replica_id,
            group=group.name,
            components=group.components,
            run_main=group.is_main,
            config=self.config,
            app=self.app,
            sys_path=self.sys_path,
            backend=self.backend,
            log_level=self.log_level,
            trace_sample_ratio=self.trace_sample_ratio,
            child=self.child_factory(group.name, group.is_main),
            handler=self,
            socket_dir=self.socket_dir,
            name=self._next_socket_name(),
            ready_timeout=self.ready_timeout,
            tls=tls[0] if tls else None,
            weavelet_tls=tls[1] if tls else None,
            tls_callers=tls[2] if tls else None,
        )

    async def _run_slot(self, slot: Slot) -> None:
        """Keeps ``slot`` filled with a live weavelet, restarting it with backoff."""
        try:
            if self._over(slot):
                return
            retry = self.restart.max_backoff
            while True:
                try:
                    outcome = await self._slots.keep_filled(slot)
                    break
                except CrashLoopError as exc:
                    slot.state = "failed"
                    self._group_degraded(slot, exc, retry)
                await anyio.sleep(retry)
                retry = min(retry * 2, DEGRADED_RETRY)
                if self._over(slot):
                    return
            if self._over(slot):  # it ended because it was stopped
                return
            if slot.group.is_main:
                if outcome.error is None:
                    self._main_exited(outcome.status if outcome.status is not None else 1)
                else:
                    slot.state = "failed"
                    self._group_failed(
                        slot, outcome.error, outcome.status, outcome.last_lines, crashes=1
                    )
        finally:
            slot.finished.set()

    def _over(self, slot: Slot) -> bool:
        """Whether ``slot`` is to stay empty: the deployment stops, or scale() removed it."""
        return self._stopping or slot.retired

    def _group_failed(
        self,
        slot: Slot,
        error: ProcessError | None,
        status: int | None,
        lines: Sequence[tuple[str, str]],
        crashes: int,
    ) -> None:
        group = slot.group
        what = str(error).split("\n", 1)[0] if error is not None else f"exit status {status}"
        output = "\n".join(f"  {stream}| {line}" for stream, line in lines[-20:])
        if group.is_main and not crashes > 1:
            message = f"the main weavelet ({group.name}) failed to start: {what}"
        else:
            message = (
                f"group {group.name} keeps crashing ({crashes} crashes within "
                f"{self.restart.window:g} s); giving up: {what}"
            )
        if output:
            message += f"\nlast output of weavelet {slot.id}:\n{output}"
        group.error = message
        group.ready.set()
        self._fail(DeploymentFailed(message))

    def _group_degraded(self, slot: Slot, crash_loop: CrashLoopError, retry: float) -> None:
        """``slot`` is in a crash loop: say so (status, log) and let the other groups go
        on; the slot is retried after ``retry`` seconds."""
        group = slot.group
        cause = crash_loop.__cause__
        what = (
            str(cause).split("\n", 1)[0]
            if isinstance(cause, ProcessError)
            else f"exit status {crash_loop.returncode}"
        )
        message = (
            f"group {group.name} keeps crashing ({self.restart.max_crashes} crashes within "
            f"{self.restart.window:g} s): {what}; degraded, retrying in {retry:g} s"
        )
        output = "\n".join(f"  {stream}| {line}" for stream, line in crash_loop.last_lines[-20:])
        if output:
            message += f"\nlast output of weavelet {slot.id}:\n{output}"
        group.degraded = message
        group.ready.set()  # wake activations waiting for it: they get the reason
        self._log_system("error", message)

    def _replica_health(self, slot: Slot) -> None:
        """``slot`` became unresponsive, or answers again: route around it, or back."""
        held = slot.state == "unresponsive"
        for proxy in self.listeners.proxies.values():
            proxy.hold_owner(slot.replica_id, held)
        if not self._stopping:
            _routing.publish(slot.group)

    def _main_exited(self, status: int) -> None:
        if self._main_status is None:
            self._main_status = status
        self._done.set()

    def _replica_up(self, slot: Slot) -> None:
        group = slot.group
        if not any(other.state == "failed" for other in group.slots):
            group.degraded = ""
        group.ready.set()
        _routing.publish(group)
        wanted = sorted(group.activated & set(group.components))
        if wanted and slot.pusher is not None:
            slot.pusher.push_components(wanted)

    def _replica_down(self, slot: Slot) -> None:
        group = slot.group
        envelope_id = slot.replica_id
        for other in self.groups.values():
            other.subscribers.pop(envelope_id, None)
        self.listeners.remove_backends_of(envelope_id)
        if not self._stopping:
            _routing.publish(group)

    def _assign(self, group: Group) -> None:
        """(Re)build the routed assignment over the group's slots, stickily."""
        fraction = _routing.assign(group)
        if fraction is not None:
            assert group.assignment is not None
            self._log_system(
                "info",
                f"group {group.name}: routing assignment v{group.assignment.version} for "
                f"{len(group.slots)} replicas moved {fraction:.1%} of the keys",
            )

    async def scale(self, group_name: str, replicas: int) -> float | None:
        """Change the number of replica slots of a started group; returns the fraction
        of routed keys that moved (None if the group is not routed)."""
        group = self.groups[group_name]
        if replicas < 1:
            raise ValueError("a group needs at least one replica")
        assert self._task_group is not None
        while len(group.slots) < replicas:
            slot = Slot(group=group, index=len(group.slots))
            group.slots.append(slot)
            if group.started:
                self._start_slot(slot)
        removed = group.slots[replicas:]
        group.slots = group.slots[:replicas]
        for slot in removed:
            slot.retired = True
        group.replicas = replicas
        before = len(group.moved_fractions)
        if group.routed:
            self._assign(group)
        _routing.publish(group)
        for slot in removed:
            await self._stop_slot(slot)
        return group.moved_fractions[-1] if len(group.moved_fractions) > before else None

    # -- EnvelopeHandler ----------------------------------------------------------------

    def _slot_of(self, envelope: Envelope) -> Slot | None:
        group = self.groups.get(envelope.group)
        if group is None:
            return None
        for slot in group.slots:
            if slot.replica_id == envelope.replica_id:
                return slot
        return None

    def accept(self, envelope: Envelope, info: m.Register) -> str:
        if self.fingerprint is None:
            self.fingerprint = info.fingerprint
        elif info.fingerprint != self.fingerprint:
            return (
                "its app differs from the rest of the deployment (component method "
                "signatures do not match); every weavelet must run the same app version"
            )
        return ""

    async def activate_component(
        self, envelope: Envelope, request: m.ActivateComponent
    ) -> m.RoutingInfo:
        group = self.group_of(request.component)
        new = request.component not in group.activated
        group.activated.add(request.component)
        if request.routed and not group.routed:
            group.routed = True
            self._assign(group)
        subscriber = self._slot_of(envelope)
        if subscriber is not None:
            group.subscribers[subscriber.replica_id] = subscriber
        await self._ensure_started(group)
        try:
            await self._wait_ready(group)
        except DeploymentFailed as exc:
            return attrs.evolve(_routing.routing_info(group), error=str(exc))
        if new:
            _routing.push_components(group)
        return _routing.routing_info(group)

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        # Every replica binds its own port; the proxy owns the configured address.
        return m.ListenerAddress(address="127.0.0.1:0")

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        assert self._task_group is not None
        return await self.listeners.export(self._task_group, envelope.replica_id, request)

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        self.telemetry.handle_logs(entries)

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None:
        self.telemetry.handle_spans(spans)

    def _log_system(self, level: str, message: str) -> None:
        self.telemetry.log_system(level, message)

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The deployment's state as plain data (groups, replicas, listeners)."""
        groups = list(self.groups.values())
        return await self.telemetry.status(groups, self.listeners.status(), self.started)

    async def metrics(self, *, per_replica: bool = False) -> list[dict[str, Any]]:
        """Every live weavelet's metrics, merged, labelled with app and version (with
        ``per_replica``: each replica's kept apart, labelled with its id)."""
        return await self.telemetry.metrics(list(self.groups.values()), per_replica=per_replica)
