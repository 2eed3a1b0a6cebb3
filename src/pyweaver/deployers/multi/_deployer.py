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
seconds is a crash loop: the deployment stops and reports the weavelet's last output
lines. When the main weavelet exits, the deployment is over: :meth:`wait` returns its
exit status.

**Stopping.** Leaving the ``async with`` stops the main group first (so ``shutdown``
hooks in main can still call other components), then every other weavelet at once:
SIGTERM, grace period, SIGKILL, under a shield.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from pyweaver._errors import PyWeaverError
from pyweaver.contract import MAIN
from pyweaver.contract import messages as m
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._metrics import add_labels, merge_snapshots
from pyweaver.contract._routing import Assignment, moved_fraction
from pyweaver.deployers._proxy import ListenerInUseError, ProxyError, TcpProxy
from pyweaver.envelope import Child, Envelope, ProcessError, RestartPolicy

__all__ = [
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "group_layout",
]

DEFAULT_REPLICAS: Final = 2
ACTIVATION_TIMEOUT: Final = 60.0  # seconds an activation waits for its group to come up

ChildFactory = Callable[[str, bool], Child]
"""``factory(group, run_main)``: how to start a weavelet of ``group``."""

LogSink = Callable[[Sequence[LogEntry]], None]
SpanSink = Callable[[Sequence[dict[str, Any]]], None]


class DeploymentFailed(PyWeaverError):
    """The deployment cannot go on: a weavelet crash-loops, or a listener's proxy
    address is taken. The message carries the weavelet's last output lines."""


def group_layout(config: AppConfig, components: Sequence[str] = ()) -> dict[str, list[str]]:
    """Group name -> its components, from ``colocate``; ``components`` not listed get a
    group of their own, and ``main`` is always placed (group ``main`` if not listed)."""
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for entry in config.colocate:
        names = [name for name in entry if name not in seen]
        if names:
            groups[names[0]] = names
            seen.update(names)
    for name in [MAIN, *components]:
        if name not in seen:
            groups[name] = [name]
            seen.add(name)
    return groups


@attrs.define(eq=False)
class Slot:
    """One replica slot of a group and the weavelet filling it now."""

    group: Group
    index: int
    envelope: Envelope | None = None
    state: str = "starting"  # starting | ready | restarting | failed | stopped
    starts: int = 0
    last_exit: int | None = None
    replica_id: str = ""
    pusher: _Pusher | None = None
    retired: bool = False  # removed by scale(): stop it, do not restart it
    task_started: bool = False  # a task keeps it filled ...
    finished: anyio.Event = attrs.Factory(anyio.Event)  # ... and has returned

    @property
    def id(self) -> str:
        return f"{self.group.name}#{self.index}"


@attrs.define(eq=False)
class Group:
    """A colocation group and its replica slots."""

    name: str
    components: list[str]
    replicas: int
    is_main: bool
    slots: list[Slot] = attrs.Factory(list)
    started: bool = False
    ready: anyio.Event = attrs.Factory(anyio.Event)
    error: str = ""
    activated: set[str] = attrs.Factory(set)
    routed: bool = False
    version: int = 0
    assignment: Assignment | None = None
    subscribers: dict[str, Slot] = attrs.Factory(dict)  # replica id -> subscribing slot
    moved_fractions: list[float] = attrs.Factory(list)

    def live(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.state == "ready" and slot.envelope]


class _Pusher:
    """Sends one weavelet the newest routing info per group and component set, in
    order, from one task: a slow weavelet delays only itself, and an older push can
    never overtake a newer one."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.routing: dict[str, m.RoutingInfo] = {}
        self.components: list[str] | None = None
        self._wake = anyio.Event()

    def push_routing(self, info: m.RoutingInfo) -> None:
        self.routing[info.group] = info
        self._wake.set()

    def push_components(self, components: list[str]) -> None:
        self.components = components
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            components, self.components = self.components, None
            routing, self.routing = self.routing, {}
            try:
                if components is not None:
                    await self.envelope.update_components(components)
                for info in routing.values():
                    await self.envelope.update_routing(info)
            except PyWeaverError:
                # The weavelet is going away; its slot's next weavelet gets fresh state.
                return


class MultiDeployer:
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
    ) -> None:
        self.config = config
        self.child_factory = child_factory
        self.socket_dir = socket_dir
        self.deployment_id = deployment_id or str(uuid.uuid4())
        self.app = list(app)
        self.sys_path = list(sys_path)
        self.backend = backend
        self.log_sink = log_sink
        self.log_level = log_level
        self.trace_sample_ratio = trace_sample_ratio
        self.span_sink = span_sink
        self.default_replicas = default_replicas
        self.main_replicas = main_replicas
        self.restart = restart or RestartPolicy()
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.started = time.time()
        self.fingerprint: bytes | None = None
        self.groups: dict[str, Group] = {}
        self._layout = group_layout(config)
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
        self.proxies: dict[str, TcpProxy] = {}
        self._proxy_errors: dict[str, str] = {}
        self._proxy_lock = anyio.Lock()
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

    # -- life -------------------------------------------------------------------------

    async def __aenter__(self) -> MultiDeployer:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._task_group is not None
        with anyio.CancelScope(shield=True):
            await self._stop_all()
            # Let every slot's task see its weavelet end and return by itself: one
            # cancelled while its envelope unwinds would turn a weavelet's expected
            # exit into an error of the whole deployer.
            with anyio.move_on_after(self.stop_grace + 5.0):
                for group in list(self.groups.values()):
                    for slot in group.slots:
                        if slot.task_started:
                            await slot.finished.wait()
        self._task_group.cancel_scope.cancel()
        return bool(await self._task_group.__aexit__(exc_type, exc, traceback))

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

    async def _run_slot(self, slot: Slot) -> None:
        """Keeps ``slot`` filled with a live weavelet, restarting it with backoff."""
        try:
            await self._fill_slot(slot)
        finally:
            slot.finished.set()

    async def _fill_slot(self, slot: Slot) -> None:
        group = slot.group
        policy = self.restart
        crashes: deque[float] = deque()
        backoff = policy.initial_backoff
        while not self._stopping and not slot.retired:
            slot.replica_id = f"{slot.index}-{uuid.uuid4().hex[:6]}"
            envelope = Envelope(
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
            )
            started_at = anyio.current_time()
            error: ProcessError | None = None
            status: int | None = None
            slot.envelope = envelope
            slot.state = "starting"
            try:
                async with envelope, anyio.create_task_group() as tasks:
                    slot.pusher = _Pusher(envelope)
                    tasks.start_soon(slot.pusher.run)
                    slot.state = "ready"
                    slot.starts += 1
                    self._replica_up(slot)
                    status = await envelope.wait()
                    tasks.cancel_scope.cancel()
            except ProcessError as exc:
                error = exc
                status = exc.returncode
            except Exception as exc:
                # Not the weavelet's fault as far as we know (the envelope itself
                # failed); treat it as a crash of this replica, never of the deployer.
                self._log_system("error", f"weavelet {slot.id}: envelope failed: {exc!r}")
                status = None
            finally:
                last_lines = error.last_lines if error is not None else envelope.last_lines
                slot.envelope = None
                slot.pusher = None
                slot.last_exit = status
                slot.state = "stopped" if self._stopping or slot.retired else "restarting"
                self._replica_down(slot)
            if self.stopping or slot.retired:
                return
            if group.is_main and error is None:
                self._main_exited(status if status is not None else 1)
                return
            now = anyio.current_time()
            if now - started_at >= policy.window:
                backoff = policy.initial_backoff  # it ran well for a while
            crashes.append(now)
            while crashes and crashes[0] <= now - policy.window:
                crashes.popleft()
            if group.is_main or len(crashes) >= policy.max_crashes:
                slot.state = "failed"
                self._group_failed(slot, error, status, last_lines, len(crashes))
                return
            self._log_system(
                "warning",
                f"weavelet {slot.id} exited (status {status}); restarting in {backoff:.2f} s",
            )
            await anyio.sleep(backoff)
            backoff = min(backoff * policy.multiplier, policy.max_backoff)

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

    def _main_exited(self, status: int) -> None:
        if self._main_status is None:
            self._main_status = status
        self._done.set()

    def _replica_up(self, slot: Slot) -> None:
        group = slot.group
        group.ready.set()
        self._publish(group)
        wanted = sorted(group.activated & set(group.components))
        if wanted and slot.pusher is not None:
            slot.pusher.push_components(wanted)

    def _replica_down(self, slot: Slot) -> None:
        group = slot.group
        envelope_id = slot.replica_id
        for other in self.groups.values():
            other.subscribers.pop(envelope_id, None)
        for proxy in self.proxies.values():
            proxy.remove_backends_of(envelope_id)
        if not self._stopping:
            self._publish(group)

    def _routing_info(self, group: Group) -> m.RoutingInfo:
        replicas = {
            slot.id: slot.envelope.data_address
            for slot in group.live()
            if slot.envelope is not None and slot.envelope.data_address
        }
        return m.RoutingInfo(
            group=group.name,
            components=list(group.components),
            version=group.version,
            replicas=replicas,
            assignment=group.assignment.to_wire() if group.assignment is not None else None,
            error=group.error,
        )

    def _publish(self, group: Group) -> None:
        """Push ``group``'s routing info (new version) to all its subscribers."""
        group.version += 1
        info = self._routing_info(group)
        for subscriber in list(group.subscribers.values()):
            if subscriber.pusher is not None:
                subscriber.pusher.push_routing(info)

    def _assign(self, group: Group) -> None:
        """(Re)build the routed assignment over the group's slots, stickily."""
        slots = [slot.id for slot in group.slots]
        previous = group.assignment
        if previous is not None and list(previous.replicas) == sorted(slots):
            return
        group.assignment = Assignment.build(slots, previous)
        if previous is not None:
            fraction = moved_fraction(previous, group.assignment)
            group.moved_fractions.append(fraction)
            self._log_system(
                "info",
                f"group {group.name}: routing assignment v{group.assignment.version} for "
                f"{len(slots)} replicas moved {fraction:.1%} of the keys",
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
        self._publish(group)
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
            return attrs.evolve(self._routing_info(group), error=str(exc))
        if new:
            wanted = sorted(group.activated & set(group.components))
            for slot in group.live():
                if slot.pusher is not None:
                    slot.pusher.push_components(wanted)
        return self._routing_info(group)

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        # Every replica binds its own port; the proxy owns the configured address.
        return m.ListenerAddress(address="127.0.0.1:0")

    def _proxy_address(self, request: m.ExportListener) -> str:
        configured = self.config.multi.listeners.get(request.name)
        if configured:
            return str(configured)
        return request.local_address or "127.0.0.1:0"

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        async with self._proxy_lock:
            if request.name in self._proxy_errors:
                return m.ExportListenerReply(error=self._proxy_errors[request.name])
            proxy = self.proxies.get(request.name)
            if proxy is None:
                address = self._proxy_address(request)
                try:
                    assert self._task_group is not None
                    proxy = await self._task_group.start(self._run_proxy, request.name, address)
                except (OSError, ProxyError) as exc:
                    error = f"the proxy for listener {request.name!r}: {exc}"
                    if isinstance(exc, ListenerInUseError):
                        error = (
                            f"the proxy for listener {request.name!r} cannot listen on "
                            f"{address}: the address is already in use"
                        )
                    self._proxy_errors[request.name] = error
                    self._log_system("error", error)
                    return m.ExportListenerReply(error=error)
        proxy.add_backend(request.address, owner=envelope.replica_id)
        return m.ExportListenerReply(proxy_address=proxy.address)

    async def _run_proxy(
        self,
        name: str,
        address: str,
        *,
        task_status: anyio.abc.TaskStatus[TcpProxy] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        try:
            async with TcpProxy(address, name=name) as proxy:
                self.proxies[name] = proxy
                self._log_system("info", f"listener {name} available at {proxy.address}")
                task_status.started(proxy)
                started = True
                await anyio.sleep_forever()
        except Exception as exc:
            if not started:
                raise  # export_listener reports it to the weavelet
            # A proxy that dies leaves its listener unreachable: the deployment is broken.
            self.proxies.pop(name, None)
            self._fail(DeploymentFailed(f"the proxy of listener {name!r} failed: {exc!r}"))

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        if self.log_sink is None:
            return
        app = self.config.name
        self.log_sink([entry if entry.app else attrs.evolve(entry, app=app) for entry in entries])

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None:
        if self.span_sink is not None:
            self.span_sink(spans)

    def _log_system(self, level: str, message: str) -> None:
        if self.log_sink is None:
            return
        self.log_sink(
            [
                LogEntry(
                    time_ns=time.time_ns(),
                    level=level,
                    message=message,
                    component="pyweaver.multi",
                    app=self.config.name,
                    deployment=self.deployment_id,
                    source="logger",
                )
            ]
        )

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The deployment's state as plain data (groups, replicas, listeners)."""
        groups = []
        for group in self.groups.values():
            replicas = []
            for slot in group.slots:
                envelope = slot.envelope
                health: dict[str, Any] = {}
                if envelope is not None and slot.state == "ready":
                    with anyio.move_on_after(2.0):
                        try:
                            reply = await envelope.health()
                            health = {
                                "healthy": reply.healthy,
                                "built": reply.components,
                                "failed": reply.failed,
                            }
                        except PyWeaverError as exc:
                            health = {"healthy": False, "error": str(exc)}
                replicas.append(
                    {
                        "slot": slot.id,
                        "replica": slot.replica_id,
                        "pid": envelope.pid if envelope is not None else 0,
                        "state": slot.state,
                        "starts": slot.starts,
                        "last_exit": slot.last_exit,
                        "health": health,
                    }
                )
            groups.append(
                {
                    "name": group.name,
                    "components": list(group.components),
                    "activated": sorted(group.activated),
                    "routed": group.routed,
                    "replicas": replicas,
                }
            )
        listeners = [
            {"name": name, "proxy": proxy.address, "backends": list(proxy.backends)}
            for name, proxy in sorted(self.proxies.items())
        ]
        return {
            "deployment": self.deployment_id,
            "app": self.config.name,
            "started": self.started,
            "groups": groups,
            "listeners": listeners,
        }

    async def metrics(self) -> list[dict[str, Any]]:
        """Every live weavelet's metrics, merged, labelled with app and version."""
        snapshots: list[list[dict[str, Any]]] = []

        async def collect(envelope: Envelope) -> None:
            with anyio.move_on_after(5.0):
                try:
                    snapshots.append(await envelope.metrics())
                except PyWeaverError:
                    pass

        async with anyio.create_task_group() as tasks:
            for group in self.groups.values():
                for slot in group.live():
                    if slot.envelope is not None:
                        tasks.start_soon(collect, slot.envelope)
        labels = {
            "serviceweaver_app": self.config.name,
            "serviceweaver_version": self.deployment_id,
        }
        return add_labels(merge_snapshots(snapshots), labels)
