"""The deploying process: puts a deployment on a Ray cluster and fronts it.

Theory of operation
===================

:class:`RayDeployment` (an async context manager, run by ``pyweaver ray deploy``):

1. connects to Ray (``address``, or a local Ray that ``ray.init`` starts and
   ``ray.shutdown`` stops, by PID) with the app's directory as the job's
   ``working_dir`` (plus ``[ray] runtime_env``, plus pyweaver itself as a
   ``py_modules`` entry with ``ship_pyweaver``), so nodes need no shared directory;
2. learns the app's components and listeners by importing it in a subprocess
   (``pyweaver._check``, as ``kube deploy`` does) and lays out the groups as every
   deployer does;
3. starts the manager actor (named ``pyweaver-manager:<deployment id>`` in the
   ``[ray] namespace``, pinned to this process's node), one TCP proxy per listener
   here, and one replica actor per slot (:mod:`._replica`), then waits until every
   replica has registered;
4. while it runs, follows the manager (long-polls): the proxies' backends are the
   listed replicas' listener addresses; the replicas' log entries and spans are
   drained into the log store and trace file, as ``multi`` keeps them; the status
   endpoint answers with :meth:`RayDeployment.status` and ``metrics`` in the shape
   ``multi`` answers with, so ``pyweaver multi dashboard`` shows both kinds;
5. ends when asked (a signal; ``pyweaver ray stop`` through the manager:
   :attr:`RayDeployment.stop_requested`) or when main returns (its exit status is
   :attr:`RayDeployment.main_status`, which ``deploy`` exits with, as in ``multi``);
6. on exit, stops every replica (the weavelet politely, then the actor, no restart)
   and the manager.

**mTLS** (``[ray] mtls``, on by default: calls cross machines). The deploying process
makes the deployment's CA (:class:`~pyweaver.deployers._ca.DeploymentCA`, its key only
in this process's memory), a certificate per group and one for the replicas'
envelopes, and passes each replica actor its group's material (PEM bytes, in the
actor's constructor arguments: never in env vars or logs; a restarted actor gets the
same arguments) with who may call which of its group's components (the app's Ref
edges). The replica writes them 0600 into its private directory
(:class:`~pyweaver.deployers._node.NodeTls`); weavelets then call each other over
TCP with TLS 1.3, verified both ways.

With ``detached`` the actors are Ray *detached* actors: they outlive this process and
``pyweaver ray stop DEPLOYMENT`` (:func:`stop_by_name`) ends them through the manager.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pyweaver._errors import DeploymentFailed, PyWeaverError
from pyweaver.contract import MAIN, AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._metrics import add_labels, merge_snapshots
from pyweaver.contract._tls import callers_of
from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers._proxy import TcpProxy
from pyweaver.deployers.kube._plan import AppInfo, group_layout
from pyweaver.deployers.ray._config import RayConfig
from pyweaver.deployers.ray._manager import ManagerActor, slot_ids
from pyweaver.deployers.ray._replica import Replica, ReplicaSpec, _ray_get

__all__ = ["MANAGER_PREFIX", "RayDeployment", "connect", "list_managers", "stop_by_name"]

MANAGER_PREFIX: Final = "pyweaver-manager:"
READY_TIMEOUT: Final = 180.0  # seconds every replica may take to come up
LISTENER_TIMEOUT: Final = 30.0  # seconds deploy waits for every listener's first backend
_STATUS_TIMEOUT: Final = 3.0

LogSink = Callable[[Sequence[LogEntry]], None]
SpanSink = Callable[[Sequence[dict[str, Any]]], None]


def connect(
    address: str | None,
    *,
    node_ip: str = "",
    runtime_env: dict[str, Any] | None = None,
    namespace: str | None = None,
) -> None:
    """``ray.init``: join ``address``, or (None) start a small local Ray."""
    options: dict[str, Any] = {
        "runtime_env": runtime_env,
        "namespace": namespace,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if node_ip:
        options["_node_ip_address"] = node_ip
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(
            include_dashboard=False,
            object_store_memory=80_000_000,
            **options,
        )


def manager_name(deployment_id: str) -> str:
    return f"{MANAGER_PREFIX}{deployment_id}"


class RayDeployment(anyio.AsyncContextManagerMixin):
    """One deployment of an app on Ray (see the module docstring); ``connect`` first."""

    def __init__(
        self,
        config: AppConfig,
        ray_config: RayConfig,
        app: AppInfo,
        *,
        deployment_id: str | None = None,
        detached: bool = False,
        trace_sample_ratio: float = 0.0,
        log_sink: LogSink | None = None,
        span_sink: SpanSink | None = None,
    ) -> None:
        assert config.path is not None
        self.config = config
        self.ray_config = ray_config
        self.app_info = app
        self.deployment_id = deployment_id or str(uuid.uuid4())
        self.detached = detached
        self.trace_sample_ratio = trace_sample_ratio
        self.log_sink = log_sink
        self.span_sink = span_sink
        self.started = time.time()
        self.layout = group_layout(config, app.components)
        self.group_of = {c: g for g, cs in self.layout.items() for c in cs}
        self.replicas = {
            name: self.ray_config.group(name, is_main=MAIN in components).replicas or 1
            for name, components in self.layout.items()
        }
        self.proxies: dict[str, TcpProxy] = {}
        self.manager: Any = None
        self.actors: dict[str, Any] = {}
        self.snapshot: dict[str, Any] = {}
        self.stop_requested = anyio.Event()
        self.main_status: int | None = None  # main's exit status, once it returned
        self._drained = 0  # the manager's telemetry sequence drained so far

    @property
    def namespace(self) -> str:
        return self.ray_config.namespace

    def listener_names(self) -> list[str]:
        """Every listener to proxy: declared as a component field, or named in a
        deployer section of weaver.toml (main's ``root.listener(name)`` calls are not
        known before it runs), as ``kube deploy`` finds them."""
        config = self.config
        return sorted(
            {
                *self.app_info.listeners,
                *self.ray_config.listeners,
                *config.single.listeners,
                *config.multi.listeners,
            }
        )

    # -- life -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[RayDeployment]:
        async with anyio.create_task_group() as tasks:
            try:
                for name in self.listener_names():
                    address = self.ray_config.listeners.get(name, "0.0.0.0:0")
                    self.proxies[name] = await tasks.start(self._run_proxy, name, address)
                await self._start_manager()
                await self._start_replicas()
                self.snapshot = await _ray_get(self.manager.snapshot.remote(0, 0.0))
                tasks.start_soon(self._follow)
                await self._wait_for_listeners()
                tasks.start_soon(self._drain)
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop()
                tasks.cancel_scope.cancel()

    async def _run_proxy(
        self, name: str, address: str, *, task_status: anyio.abc.TaskStatus[TcpProxy]
    ) -> None:
        async with TcpProxy(address, name=name) as proxy:
            task_status.started(proxy)
            await anyio.sleep_forever()

    def _lifetime(self) -> dict[str, Any]:
        return {"lifetime": "detached"} if self.detached else {}

    async def _start_manager(self) -> None:
        node_id = ray.get_runtime_context().get_node_id()
        actor_class = ray.remote(ManagerActor)
        self.manager = actor_class.options(
            name=manager_name(self.deployment_id),
            namespace=self.namespace,
            num_cpus=0,
            max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            **self._lifetime(),
        ).remote(
            deployment_id=self.deployment_id,
            app=self.config.name,
            groups=self.layout,
            replicas=self.replicas,
            routed=self.app_info.routed,
        )
        await _ray_get(self.manager.set_proxies.remote(self.proxy_addresses()), 60.0)

    def proxy_addresses(self) -> dict[str, str]:
        return {name: proxy.address for name, proxy in self.proxies.items()}

    async def _start_replicas(self) -> None:
        assert self.config.path is not None
        tls = self._tls_material()
        spec = ReplicaSpec(
            deployment_id=self.deployment_id,
            app=self.config.name,
            config_file=self.config.path.name,
            manager=manager_name(self.deployment_id),
            namespace=self.namespace,
            groups=self.layout,
            routed=list(self.app_info.routed),
            trace_sample_ratio=self.trace_sample_ratio,
        ).to_json()
        actor_class = ray.remote(Replica)
        for group, components in self.layout.items():
            settings = self.ray_config.group(group, is_main=MAIN in components)
            options: dict[str, Any] = {
                "namespace": self.namespace,
                "num_cpus": settings.cpus,
                "max_restarts": self.ray_config.max_restarts,
                "max_concurrency": 4,
                **self._lifetime(),
            }
            if settings.memory_mb:
                options["memory"] = settings.memory_mb * 1024 * 1024
            if settings.resources:
                options["resources"] = dict(settings.resources)
            for slot in slot_ids(group, self.replicas[group]):
                self.actors[slot] = actor_class.options(
                    name=f"{self.deployment_id}:{slot}", **options
                ).remote(spec, slot, tls.get(group))
        pending = {slot: actor.info.remote() for slot, actor in self.actors.items()}
        deadline = time.monotonic() + READY_TIMEOUT
        for slot, ref in pending.items():
            remaining = max(deadline - time.monotonic(), 1.0)
            try:
                await _ray_get(ref, remaining)
            except PyWeaverError as exc:
                snapshot = await _ray_get(self.manager.snapshot.remote(0, 0.0))
                errors = [
                    f"{r['slot']}: {r['error']}"
                    for g in snapshot["groups"]
                    for r in g["replicas"]
                    if r["error"]
                ]
                detail = "\n".join(errors) or str(exc)
                raise DeploymentFailed(f"replica {slot} did not come up:\n{detail}") from exc

    def _tls_material(self) -> dict[str, dict[str, Any]]:
        """With ``[ray] mtls``: group -> what its replica actors are given (a fresh CA
        per deployment); empty without."""
        if not self.ray_config.mtls:
            return {}
        ca = DeploymentCA.create(self.deployment_id)
        deployer = ca.issue_deployer()
        return {
            group: {
                "group": attrs.asdict(ca.issue_group(group)),
                "deployer": attrs.asdict(deployer),
                "callers": callers_of(group, self.layout, self.app_info.edges),
            }
            for group in self.layout
        }

    async def _wait_for_listeners(self) -> None:
        """Until every proxied listener has a backend (bounded): a listener is exported
        only once its replica's code asked for it, after the replica is up."""
        with anyio.move_on_after(LISTENER_TIMEOUT):
            while not self.stop_requested.is_set() and any(
                not proxy.backends for proxy in self.proxies.values()
            ):
                await anyio.sleep(0.1)

    async def _follow(self) -> None:
        """Keep the snapshot and the proxies' backends current; notice the end."""
        while True:
            backends = self.snapshot["backends"]
            for name, proxy in self.proxies.items():
                proxy.set_backends(backends.get(name, []))
            if self.snapshot.get("main_status") is not None and self.main_status is None:
                self.main_status = int(self.snapshot["main_status"])
                self.stop_requested.set()
            if self.snapshot.get("stopping"):
                self.stop_requested.set()
            try:
                self.snapshot = await _ray_get(
                    self.manager.snapshot.remote(self.snapshot.get("epoch", 0), 2.0), 15.0
                )
            except PyWeaverError:
                await anyio.sleep(1.0)

    async def _drain_once(self) -> bool:
        """Move one batch of the replicas' log entries and spans to the sinks; whether
        there was any."""
        batch = await _ray_get(self.manager.drain.remote(self._drained))
        self._drained = batch["next"]
        if batch["logs"] and self.log_sink is not None:
            self.log_sink([LogEntry.from_wire(entry) for entry in batch["logs"]])
        if batch["spans"] and self.span_sink is not None:
            self.span_sink(batch["spans"])
        return bool(batch["logs"] or batch["spans"])

    async def _drain(self) -> None:
        while True:
            try:
                more = await self._drain_once()
            except PyWeaverError:
                more = False
            if not more:
                await anyio.sleep(0.3)

    async def _stop(self) -> None:
        async def stop_one(actor: Any) -> None:
            with contextlib.suppress(PyWeaverError):
                await _ray_get(actor.stop.remote(), 20.0)
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)

        # Main's group first, so its shutdown hooks can still reach the others.
        main_group = self.group_of.get(MAIN, MAIN)
        for first in (True, False):
            async with anyio.create_task_group() as stoppers:
                for slot, actor in self.actors.items():
                    if (slot.rpartition("#")[0] == main_group) == first:
                        stoppers.start_soon(stop_one, actor)
        if self.manager is not None:
            # Last entries (the weavelets' stop messages) before the manager goes.
            with contextlib.suppress(PyWeaverError), anyio.move_on_after(10.0):
                while await self._drain_once():
                    pass
            with contextlib.suppress(Exception):
                ray.kill(self.manager, no_restart=True)

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The deployment's state as plain data (the shape of ``multi status``)."""
        snapshot = self.snapshot
        groups = []
        for group in snapshot.get("groups", []):
            replicas = []
            for replica in group["replicas"]:
                health: dict[str, Any] = {}
                usage: dict[str, Any] | None = None
                actor = self.actors.get(replica["slot"])
                if replica["state"] == "ready" and actor is not None:
                    try:
                        refs = [actor.health.remote(), actor.usage.remote()]
                        health, usage = await _ray_get(refs, _STATUS_TIMEOUT)
                    except PyWeaverError as exc:
                        health = {"healthy": False, "error": str(exc)}
                replicas.append(
                    {
                        **replica,
                        "status": _replica_status(replica["state"], health),
                        "restarts": max(replica["starts"] - 1, 0),
                        "health": health,
                        "usage": usage,
                        "last_exit": None,
                    }
                )
            groups.append({**group, "replicas": replicas, "activated": list(group["components"])})
        return {
            "deployment": self.deployment_id,
            "app": self.config.name,
            "deployer": "ray",
            "namespace": self.namespace,
            "started": self.started,
            "groups": groups,
            "listeners": [
                {
                    "name": name,
                    "proxy": proxy.address,
                    "backends": list(proxy.backends),
                }
                for name, proxy in sorted(self.proxies.items())
            ],
        }

    async def metrics(self, *, per_replica: bool = False) -> list[dict[str, Any]]:
        """Every live replica's metrics, merged, labelled with app and version (with
        ``per_replica``: each replica's kept apart, labelled ``serviceweaver_group`` and
        ``serviceweaver_node`` with its replica id, as ``multi`` does)."""
        snapshots: list[list[dict[str, Any]]] = []
        replica_ids = {
            r["slot"]: r["replica"] for g in self.snapshot.get("groups", []) for r in g["replicas"]
        }

        async def collect(slot: str, actor: Any) -> None:
            with contextlib.suppress(PyWeaverError):
                samples = await _ray_get(actor.metrics.remote(), 6.0)
                if per_replica:
                    labels = {
                        "serviceweaver_group": slot.rpartition("#")[0],
                        "serviceweaver_node": replica_ids.get(slot) or slot,
                    }
                    samples = add_labels(samples, labels)
                snapshots.append(samples)

        async with anyio.create_task_group() as tasks:
            for slot, actor in self.actors.items():
                tasks.start_soon(collect, slot, actor)
        labels = {
            "serviceweaver_app": self.config.name,
            "serviceweaver_version": self.deployment_id,
        }
        return add_labels(merge_snapshots(snapshots), labels)


def _replica_status(state: str, health: dict[str, Any]) -> str:
    """One word for a replica, as ``multi`` reports it."""
    if state != "ready":
        return state
    if not health:
        return "starting"
    if not health.get("healthy"):
        return "unhealthy"
    return "failed" if health.get("failed") else "healthy"


# -- deployments found by name (detached ones, `pyweaver ray stop`) --------------------------


def list_managers() -> list[tuple[str, str]]:
    """``(namespace, deployment id)`` of every pyweaver deployment on the cluster."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = str(entry["name"])
        if name.startswith(MANAGER_PREFIX):
            found.append((str(entry["namespace"]), name.removeprefix(MANAGER_PREFIX)))
    return sorted(found)


def stop_by_name(id_or_prefix: str, *, follower_wait: float = 60.0) -> str:
    """Stop the deployment whose id is, or starts with, ``id_or_prefix``. Returns its id.

    The manager is told first: the deploying process following it (a foreground
    ``deploy`` or a ``--detach``'ed one in the background) stops every replica and the
    manager in order, as on Ctrl-C. If the manager is still there after
    ``follower_wait`` seconds (no deploying process follows it any more), every replica
    actor and the manager are stopped and killed here, by name.
    """
    matches = [(ns, d) for ns, d in list_managers() if d.startswith(id_or_prefix)]
    exact = [(ns, d) for ns, d in matches if d == id_or_prefix]
    if exact:
        matches = exact
    if len(matches) != 1:
        what = "no" if not matches else "more than one"
        raise PyWeaverError(
            f"{what} pyweaver deployment on this Ray cluster matches {id_or_prefix!r}"
        )
    namespace, deployment_id = matches[0]
    manager: Any = ray.get_actor(manager_name(deployment_id), namespace=namespace)
    try:
        # The slots first: once told to stop, the deploying process may kill the
        # manager at any moment.
        slots: list[str] = ray.get(manager.slots.remote(), timeout=30)
        ray.get(manager.request_stop.remote(), timeout=30)
    except ray.exceptions.RayActorError:
        return deployment_id  # the manager is gone: its deploying process stopped it
    deadline = time.monotonic() + follower_wait
    while time.monotonic() < deadline:
        if (namespace, deployment_id) not in list_managers():
            return deployment_id  # the deploying process stopped it
        time.sleep(0.5)
    for slot in slots:
        try:
            actor: Any = ray.get_actor(f"{deployment_id}:{slot}", namespace=namespace)
        except ValueError:
            continue
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(actor.stop.remote(), timeout=20)
        ray.kill(actor, no_restart=True)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(manager_name(deployment_id), namespace=namespace), no_restart=True)
    return deployment_id


def runtime_env(config: AppConfig, ray_config: RayConfig) -> dict[str, Any]:
    """The job's runtime env: the app's directory, ``[ray] runtime_env``, and pyweaver
    itself with ``ship_pyweaver``."""
    assert config.path is not None
    env: dict[str, Any] = json.loads(json.dumps(ray_config.runtime_env))
    env["working_dir"] = str(config.path.parent)
    if ray_config.ship_pyweaver:
        modules = list(env.get("py_modules", []))
        modules.append(str(Path(__file__).resolve().parents[2]))  # the pyweaver package
        env["py_modules"] = modules
    return env
