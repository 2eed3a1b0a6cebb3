"""A deployer for one replica on a cluster node: its weavelet, and peers from discovery.

Theory of operation
===================

On a cluster there is no deployer process beside every weavelet (as ``multi`` has),
so each replica of each colocation group runs a small one of its own, a
:class:`NodeDeployer`:

1. it starts the app as its child process in an :class:`~pyweaver.envelope.Envelope`
   whose weavelet serves the group's components on a TCP data address that peers on
   other machines can dial (the envelope's own default, a Unix socket, is local);
2. it answers the weavelet's control calls: ``activate_component`` of a component in
   another group starts a *watch* of that group (a loop asking the :class:`Discovery`
   for each newer version of the group's routing info) and replies with the first
   answer; every later version is pushed to the weavelet. Components of the replica's
   own group are local calls and never reach this code.

Where the peers come from is the :class:`Discovery`: DNS look-ups of headless
Services on Kubernetes (``deployers/kube/_pod.py``), long-polls of a manager actor on
Ray (``deployers/ray/_replica.py``). What a replica does with listeners and log
entries is the subclass's business (:meth:`NodeDeployer.get_listener_address`,
:meth:`NodeDeployer.export_listener`, the ``log_sink``).

**mTLS** (``[ray] mtls`` / ``[kube] mtls``, on by default; see ``docs/security.md``):
given a :class:`NodeTls` (its group's certificate, the deployer's, the deployment's CA
and who may call which of the group's components), the replica hands the weavelet the
paths of its group's files in its bootstrap, and the envelope uses the deployer's
certificate on the control channel, exactly as ``multi`` does: the weavelet's data
server (the TCP port peers dial) then answers only TLS 1.3 with a certificate of the
deployment, and each calling group only the components its code references. Material
that arrives as bytes (Ray: the actor's arguments) is written, mode 0600, into the
replica's private temporary directory (0700), removed when the replica ends.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import anyio.abc
import attrs

from pyweaver._errors import PyWeaverError
from pyweaver.contract import MAIN, AppConfig
from pyweaver.contract import messages as m
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._tls import TlsFiles, TlsMaterial
from pyweaver.envelope import Child, Envelope

__all__ = ["ACTIVATION_WAIT", "Discovery", "LogSink", "NodeDeployer", "NodeTls", "SpanSink"]

ACTIVATION_WAIT: Final = 10.0  # seconds an activation waits for a first live peer
_HEALTH_TIMEOUT: Final = 2.0  # seconds a health check waits for the weavelet's answer

LogSink = Callable[[Sequence[LogEntry]], None]
SpanSink = Callable[[Sequence[dict[str, Any]]], None]


class Discovery(Protocol):
    """Where the replicas of a group are."""

    async def next(self, group: str, after: int, *, routed: bool) -> m.RoutingInfo:
        """``group``'s routing info once its version is above ``after`` (0: at once).

        May return the same version again after a bounded wait (a long-poll that
        timed out); the caller simply asks again. ``routed``: a component of the group
        is routed, so the info must carry an assignment.
        """
        ...


@attrs.frozen(kw_only=True)
class NodeTls:
    """A replica's mTLS: its group's certificate, the deployer's (the envelope's side
    of the control channel), each with the deployment's CA, as files already on disk
    (Kubernetes: the mounted Secret) or as bytes to write (Ray); and calling group ->
    the components of this group it may call (:func:`pyweaver.contract._tls.callers_of`).
    """

    group: TlsFiles | TlsMaterial
    deployer: TlsFiles | TlsMaterial
    callers: dict[str, list[str]] = attrs.field(factory=dict)


def _files(tls: TlsFiles | TlsMaterial, directory: Path, stem: str) -> TlsFiles:
    if isinstance(tls, TlsFiles):
        return tls
    directory.mkdir(mode=0o700, exist_ok=True)
    return tls.write(directory, stem)


@attrs.define(eq=False)
class _Watch:
    """The routing state of one other group, kept current by :meth:`NodeDeployer._follow`."""

    group: str
    routed: bool
    info: m.RoutingInfo | None = None
    looked_up: anyio.Event = attrs.Factory(anyio.Event)
    found: anyio.Event = attrs.Factory(anyio.Event)

    @property
    def version(self) -> int:
        return self.info.version if self.info is not None else 0


class NodeDeployer(anyio.AsyncContextManagerMixin):
    """One replica's deployer (see the module docstring); the envelope's handler.

    Args:
        deployment_id, app: the deployment (the id is in every call handshake, so two
            deployments never call each other) and the app's name.
        group: this replica's group; ``groups``: every group's components.
        config: weaver.toml, with its path inside the app's directory.
        child: how to start the app process (None: :meth:`make_child` says, on entry).
        discovery: where the other groups' replicas are.
        data_address: ``tcp://host:port`` the weavelet serves peers on.
        replica_id: this replica's id.
        log_sink, span_sink: where the weavelet's log entries and spans go.
        routed: groups known to be routed before any activation says so.
        activation_wait: seconds an activation waits for a first live peer.
        ready_timeout: seconds the app process may take to register.
        trace_sample_ratio: the fraction of new traces the weavelet records (0: off).
        tls: with mTLS, the replica's certificates (None: plain TCP).
    """

    log_source: str = "node"
    """The ``source`` of this deployer's own log entries."""

    def __init__(
        self,
        *,
        deployment_id: str,
        app: str,
        group: str,
        groups: Mapping[str, Sequence[str]],
        config: AppConfig,
        child: Child | None,
        discovery: Discovery,
        data_address: str,
        replica_id: str,
        log_sink: LogSink,
        span_sink: SpanSink | None = None,
        routed: Sequence[str] = (),
        activation_wait: float = ACTIVATION_WAIT,
        ready_timeout: float = 120.0,
        trace_sample_ratio: float = 0.0,
        tls: NodeTls | None = None,
    ) -> None:
        if group not in groups:
            raise PyWeaverError(f"{group!r} is no group of the app (groups: {', '.join(groups)})")
        self.deployment_id = deployment_id
        self.app = app
        self.group = group
        self.groups = {name: list(components) for name, components in groups.items()}
        self.config = config
        self.child = child
        self.discovery = discovery
        self.data_address = data_address
        self.replica_id = replica_id
        self.log_sink = log_sink
        self.span_sink = span_sink
        self.routed = set(routed)
        self.activation_wait = activation_wait
        self.ready_timeout = ready_timeout
        self.trace_sample_ratio = trace_sample_ratio
        self.tls = tls
        self.envelope: Envelope | None = None
        self._watches: dict[str, _Watch] = {}
        self._tasks: anyio.abc.TaskGroup | None = None

    # -- life -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[NodeDeployer]:
        components = self.groups[self.group]
        with tempfile.TemporaryDirectory(prefix="pyweaver-node-") as sockets:
            deployer_tls = weavelet_tls = None
            if self.tls is not None:
                private = Path(sockets) / "tls"
                deployer_tls = _files(self.tls.deployer, private, "deployer")
                weavelet_tls = _files(self.tls.group, private, "group")
            envelope = Envelope(
                deployment_id=self.deployment_id,
                replica_id=self.replica_id,
                group=self.group,
                components=components,
                run_main=MAIN in components,
                config=self.config,
                trace_sample_ratio=self.trace_sample_ratio,
                child=self.child or self.make_child(),
                handler=self,
                socket_dir=Path(sockets),
                name="w",
                ready_timeout=self.ready_timeout,
                tls=deployer_tls,
                weavelet_tls=weavelet_tls,
                tls_callers=self.tls.callers if self.tls is not None else None,
            )
            envelope.bootstrap = attrs.evolve(envelope.bootstrap, data_address=self.data_address)
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                try:
                    async with self.serving(tasks), envelope:
                        self.envelope = envelope
                        hosted = [c for c in components if c != MAIN]
                        if hosted:
                            await envelope.update_components(hosted)
                        yield self
                finally:
                    self.envelope = None
                    tasks.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def serving(self, tasks: anyio.abc.TaskGroup) -> AsyncIterator[None]:
        """What a subclass serves beside the weavelet (health endpoint ...), in
        ``tasks``, for as long as the weavelet runs; nothing by default."""
        yield

    def make_child(self) -> Child:
        """How to start the app process, when no ``child`` was given."""
        raise PyWeaverError("no way to start the app was given")

    async def wait(self) -> int:
        """Wait for the app process to end; its exit status."""
        assert self.envelope is not None
        return await self.envelope.wait()

    async def healthy(self) -> bool:
        """Whether the weavelet has registered and says it is healthy."""
        envelope = self.envelope
        if envelope is None:
            return False
        with anyio.move_on_after(_HEALTH_TIMEOUT):
            try:
                return (await envelope.health()).healthy
            except PyWeaverError:
                return False
        return False

    # -- discovery ------------------------------------------------------------------------

    def group_of(self, component: str) -> str | None:
        for name, components in self.groups.items():
            if component in components:
                return name
        return None

    def _watch(self, group: str) -> _Watch:
        watch = self._watches.get(group)
        if watch is None:
            watch = _Watch(group=group, routed=group in self.routed)
            self._watches[group] = watch
            assert self._tasks is not None
            self._tasks.start_soon(self._follow, watch)
        return watch

    async def _follow(self, watch: _Watch) -> None:
        """Ask for every newer version of ``watch``'s group; push each to the weavelet."""
        while True:
            try:
                info = await self.discovery.next(watch.group, watch.version, routed=watch.routed)
            except PyWeaverError as exc:
                self.log_system("warning", f"discovery of group {watch.group}: {exc}")
                await anyio.sleep(1.0)
                continue
            if watch.info is None or info != watch.info:
                watch.info = info
                envelope = self.envelope
                if envelope is not None and watch.looked_up.is_set():
                    try:
                        await envelope.update_routing(info)
                    except PyWeaverError as exc:
                        self.log_system("warning", f"routing update for {watch.group}: {exc}")
            watch.looked_up.set()
            if info.replicas:
                watch.found.set()

    # -- EnvelopeHandler ------------------------------------------------------------------

    def accept(self, envelope: Envelope, info: m.Register) -> str:
        return ""

    def unknown_component(self, component: str) -> str:
        """Why ``component`` cannot be activated (it is in no group)."""
        return f"{component} is not part of this deployment (was the app changed after deploy?)"

    async def activate_component(
        self, envelope: Envelope, request: m.ActivateComponent
    ) -> m.RoutingInfo:
        group = self.group_of(request.component)
        if group is None:
            return m.RoutingInfo(
                group=request.component,
                components=[request.component],
                version=0,
                replicas={},
                error=self.unknown_component(request.component),
            )
        watch = self._watch(group)
        if request.routed:
            watch.routed = True
        await watch.looked_up.wait()
        with anyio.move_on_after(self.activation_wait):
            await watch.found.wait()
        assert watch.info is not None
        return watch.info

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        return m.ListenerAddress(address="127.0.0.1:0")

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        return m.ExportListenerReply()

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        self.log_sink(entries)

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None:
        if self.span_sink is not None:
            self.span_sink(spans)

    def log_system(self, level: str, message: str) -> None:
        """A log entry of this replica's deployer itself."""
        self.log_sink(
            [
                LogEntry(
                    time_ns=time.time_ns(),
                    level=level,
                    message=message,
                    replica=self.replica_id,
                    group=self.group,
                    app=self.app,
                    deployment=self.deployment_id,
                    source=self.log_source,
                )
            ]
        )
