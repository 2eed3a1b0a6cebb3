"""One replica of one group, as a Ray actor: the weavelet runs as the actor's child.

Theory of operation
===================

Ray places the actor (resources from ``[ray]``), and restarts it (``max_restarts``) when
its process dies or its node is lost. The actor's constructor starts a thread running
an anyio event loop with a :class:`~pyweaver.deployers._node.NodeDeployer`, which starts
the app (``python app.py``, in the directory Ray unpacked the app's ``working_dir``
into) as a child process in an :class:`~pyweaver.envelope.Envelope`. The constructor
returns once the weavelet is up and registered with the manager; if the weavelet cannot
start or dies later, the actor's process exits, so Ray restarts it (a new weavelet
in the same slot). Main's weavelet ending by itself (main returned, or raised) is not a
crash: as in ``multi``, it ends the deployment. The actor tells the manager main's exit
status and stays up, idle, for the deploying process to stop it; only a weavelet killed
by a signal is a crash that Ray restarts.

Why a child process, not the actor's own process: the app is a script whose ``main``
owns its event loop and signals, it must not share a process with Ray's worker threads
and event loop, and the envelope gives the same supervision, log capture and polite
stop as ``multi`` and Kubernetes. The weavelet watches its parent, so it also ends when
the actor's process is killed. Cost: one more process (~40 MB) per replica.

The weavelet serves peers over TCP on the node's IP (port picked free at start); peers
learn it from the manager (:class:`ManagerDiscovery`, long-polls) — Ray is never in the
call path. Listeners bind the node's IP on a free port, and are exported to the
manager, whose proxies (in the deploying process) add them as backends. The actor
renews its lease at the manager every second and ships its log entries and spans there
in batches.

With ``[ray] mtls`` (the default) the constructor's third argument is the group's TLS
material (PEM bytes made by the deploying process) and who may call which of its
components; the :class:`~pyweaver.deployers._node.NodeDeployer` writes it 0600 into
its private directory and the weavelet's data port then speaks only mutual TLS 1.3.
The material is never logged nor put in an environment variable.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import attrs
import ray

from pyweaver._errors import PyWeaverError
from pyweaver._net import format_address
from pyweaver.contract import MAIN, AppConfig, load_config
from pyweaver.contract import messages as m
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._tls import TlsMaterial
from pyweaver.deployers._node import NodeDeployer, NodeTls
from pyweaver.deployers._procstat import process_usage
from pyweaver.envelope import Child, Envelope, ProcessChild

__all__ = ["ManagerDiscovery", "Replica", "ReplicaSpec"]

RENEW_EVERY: Final = 1.0  # seconds between lease renewals
FLUSH_EVERY: Final = 0.5  # seconds between telemetry shipments
POLL_TIMEOUT: Final = 2.0  # seconds a routing long-poll waits at the manager
_CALL_TIMEOUT: Final = 10.0  # seconds any one manager call may take
_READY_TIMEOUT: Final = 120.0


@attrs.frozen(kw_only=True)
class ReplicaSpec:
    """What every replica actor of a deployment is told (plain data)."""

    deployment_id: str
    app: str
    config_file: str  # weaver.toml's name inside the app's directory (the working_dir)
    manager: str  # the manager actor's name
    namespace: str
    groups: dict[str, list[str]]
    routed: list[str]
    trace_sample_ratio: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


async def _ray_get(ref: Any, timeout: float = _CALL_TIMEOUT) -> Any:
    """``ray.get`` off the event loop's thread, bounded."""

    def get() -> Any:
        return ray.get(ref, timeout=timeout)

    try:
        return await anyio.to_thread.run_sync(get, abandon_on_cancel=True)
    except ray.exceptions.RayError as exc:
        raise PyWeaverError(f"the manager did not answer: {exc}") from exc


class ManagerDiscovery:
    """Routing info long-polled from the manager actor."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    async def next(self, group: str, after: int, *, routed: bool) -> m.RoutingInfo:
        data = await _ray_get(
            self.manager.routing.remote(group, after, POLL_TIMEOUT), POLL_TIMEOUT + _CALL_TIMEOUT
        )
        return m.RoutingInfo(**data)


class RayNodeDeployer(NodeDeployer):
    """A replica's deployer: listeners on the node's IP, exported to the manager."""

    log_source = "ray"

    def __init__(self, *, node_ip: str, manager: Any, slot: str, **options: Any) -> None:
        super().__init__(**options)
        self.node_ip = node_ip
        self.manager = manager
        self.slot = slot

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        return m.ListenerAddress(address=format_address(self.node_ip, 0))

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        try:
            proxy = await _ray_get(
                self.manager.export_listener.remote(self.slot, request.name, request.address)
            )
        except PyWeaverError as exc:
            return m.ExportListenerReply(error=str(exc))
        return m.ExportListenerReply(proxy_address=str(proxy))


def _node_tls(data: dict[str, Any]) -> NodeTls:
    """The deploying process's ``{"group": {ca, cert, key}, "deployer": {...},
    "callers": {...}}`` as a :class:`NodeTls`."""
    return NodeTls(
        group=TlsMaterial(**data["group"]),
        deployer=TlsMaterial(**data["deployer"]),
        callers={str(k): [str(c) for c in v] for k, v in data["callers"].items()},
    )


def _free_port(host: str) -> int:
    """A port free on ``host`` now (the weavelet binds it moments later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Replica:
    """The replica actor (made a Ray actor class by the deployer: ``ray.remote``)."""

    def __init__(self, spec: dict[str, Any], slot: str, tls: dict[str, Any] | None = None) -> None:
        self.spec = ReplicaSpec(**spec)
        self._tls = _node_tls(tls) if tls else None
        self.slot = slot
        self.group = slot.rpartition("#")[0]
        self.manager: Any = ray.get_actor(self.spec.manager, namespace=self.spec.namespace)
        self.node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.constructed_at = time.time()
        self._ready = threading.Event()
        self._error = ""
        self._stopped = False
        self._main_status: int | None = None  # main's exit status, once it returned
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._stop: anyio.Event | None = None
        self._deployer: RayNodeDeployer | None = None
        self._record: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name=f"pyweaver {slot}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_READY_TIMEOUT):
            self._error = f"the weavelet did not come up within {_READY_TIMEOUT:g} s"
        if self._error:
            self._report_failure(self._error)
            os._exit(1)  # Ray restarts the actor (bounded by max_restarts)

    # -- the weavelet's thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException:
            self._error = traceback.format_exc(limit=8)
        if not self._ready.is_set():
            self._ready.set()  # the constructor reports self._error
            return
        if not self._stopped and self._main_status is None:
            # The weavelet died by itself: end the actor, so Ray restarts it.
            self._report_failure(self._error or "the weavelet exited")
            os._exit(1)

    def _child(self, config: AppConfig) -> Child:
        env = {**os.environ, **config.env_vars()}
        env.pop("PYWEAVER_CONFIG", None)
        return ProcessChild(config.app_argv(), env=env, cwd=os.getcwd())

    async def _main(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._stop = anyio.Event()
        config = load_config(Path.cwd() / self.spec.config_file)
        outbox: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []

        def log_sink(entries: Sequence[LogEntry]) -> None:
            outbox.extend(entry.to_wire() for entry in entries)

        replica_id = f"{self.slot}@{self.node_ip}/{os.getpid()}"
        deployer = RayNodeDeployer(
            node_ip=self.node_ip,
            manager=self.manager,
            slot=self.slot,
            deployment_id=self.spec.deployment_id,
            app=self.spec.app,
            group=self.group,
            groups=self.spec.groups,
            config=config,
            child=self._child(config),
            discovery=ManagerDiscovery(self.manager),
            data_address=f"tcp://{format_address(self.node_ip, _free_port(self.node_ip))}",
            replica_id=replica_id,
            log_sink=log_sink,
            span_sink=spans.extend,
            routed=self.spec.routed,
            trace_sample_ratio=self.spec.trace_sample_ratio,
            tls=self._tls,
        )
        async with deployer, anyio.create_task_group() as tasks:
            self._deployer = deployer
            assert deployer.envelope is not None
            self._record = {
                "replica_id": replica_id,
                "data_address": deployer.data_address,
                "node_ip": self.node_ip,
                "node_id": ray.get_runtime_context().get_node_id(),
                "actor_pid": os.getpid(),
                "weavelet_pid": deployer.envelope.pid,
                "constructed_at": self.constructed_at,
            }
            incarnation = await _ray_get(self.manager.register.remote(self.slot, self._record))
            self._ready.set()

            async def renew() -> None:
                nonlocal incarnation
                while True:
                    await anyio.sleep(RENEW_EVERY)
                    try:
                        known = await _ray_get(self.manager.renew.remote(self.slot, incarnation))
                        if not known:  # dropped while unreachable: list it again
                            incarnation = await _ray_get(
                                self.manager.register.remote(self.slot, self._record)
                            )
                    except PyWeaverError:
                        pass  # the manager is unreachable; keep trying

            async def flush() -> None:
                while True:
                    await anyio.sleep(FLUSH_EVERY)
                    if outbox or spans:
                        logs, sent_spans = outbox[:], spans[:]
                        del outbox[:], spans[:]
                        try:
                            await _ray_get(self.manager.push.remote(logs, sent_spans))
                        except PyWeaverError:
                            pass  # dropped: telemetry never blocks the weavelet

            async def until_exit() -> None:
                status = await deployer.wait()
                if MAIN in self.spec.groups[self.group] and status >= 0 and not self._stopped:
                    # Main returned: the deployment is over (a signal's death is a crash).
                    self._main_status = status
                    try:
                        await _ray_get(self.manager.main_exited.remote(self.slot, status))
                    except PyWeaverError:
                        self._main_status = None  # nobody would stop us: let Ray restart
                tasks.cancel_scope.cancel()

            async def until_stop() -> None:
                assert self._stop is not None
                await self._stop.wait()
                tasks.cancel_scope.cancel()

            for task in (renew, flush, until_exit, until_stop):
                tasks.start_soon(task)
        # Ship what the weavelet said last (its stop, or why it died).
        if outbox or spans:
            try:
                await _ray_get(self.manager.push.remote(outbox[:], spans[:]), 5.0)
            except PyWeaverError:
                pass

    def _report_failure(self, error: str) -> None:
        try:
            ray.get(self.manager.failed.remote(self.slot, error), timeout=5.0)
        except ray.exceptions.RayError:
            pass

    # -- actor methods (called by the deploying process) ----------------------------------

    def info(self) -> dict[str, Any]:
        return dict(self._record)

    def _in_loop(self, fn: Any) -> Any:
        if self._token is None:
            raise PyWeaverError("the weavelet is not running")
        return anyio.from_thread.run(fn, token=self._token)

    def metrics(self) -> list[dict[str, Any]]:
        deployer = self._deployer

        async def collect() -> list[dict[str, Any]]:
            if deployer is None or deployer.envelope is None:
                return []
            with anyio.move_on_after(5.0):
                return await deployer.envelope.metrics()
            return []

        try:
            result: list[dict[str, Any]] = self._in_loop(collect)
        except (PyWeaverError, RuntimeError):
            return []
        return result

    def usage(self) -> dict[str, Any] | None:
        """The weavelet's CPU time and memory, read on this node (``None``: gone)."""
        deployer = self._deployer
        envelope = deployer.envelope if deployer is not None else None
        return process_usage(envelope.pid) if envelope is not None and envelope.pid else None

    def health(self) -> dict[str, Any]:
        deployer = self._deployer

        async def check() -> dict[str, Any]:
            if deployer is None or deployer.envelope is None:
                return {"healthy": False}
            try:
                with anyio.fail_after(2.0):
                    reply = await deployer.envelope.health()
            except (PyWeaverError, TimeoutError) as exc:
                return {"healthy": False, "error": str(exc)}
            return {"healthy": reply.healthy, "built": reply.components, "failed": reply.failed}

        try:
            result: dict[str, Any] = self._in_loop(check)
        except (PyWeaverError, RuntimeError) as exc:
            return {"healthy": False, "error": str(exc)}
        return result

    def stop(self) -> bool:
        """Stop the weavelet politely (SIGTERM, grace, SIGKILL); True once it ended."""
        self._stopped = True
        stop, token = self._stop, self._token
        if stop is not None and token is not None:
            try:
                anyio.from_thread.run_sync(stop.set, token=token)
            except RuntimeError:
                pass  # the loop already ended
        self._thread.join(timeout=15.0)
        return not self._thread.is_alive()
