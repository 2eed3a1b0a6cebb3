"""The weavelet's side of the envelope: what runs inside a deployed app process.

``weaver.init()`` calls :func:`run_weavelet` when ``PYWEAVER_BOOTSTRAP`` is set. The
process then

* builds a :class:`~pyweaver._runtime._weavelet.Weavelet` whose placement is
  :class:`MultiPlacement`: the components of its own colocation group are local, every
  other component is reached through a call client per group whose endpoints are that
  group's replicas (Unix sockets) and whose balancer follows the routing assignment
  pushed by the envelope;
* serves its group's component methods (the data plane) and **WeaveletControl** (the
  envelope's calls) on the Unix sockets the bootstrap names;
* registers with the envelope (**DeployerControl**), and ships its log entries there in
  batches.

With mTLS (the bootstrap names certificate files) every one of those connections is
TLS with this group's certificate; the data plane serves each calling group only the
methods of the components its code references (``tls_callers``), and WeaveletControl
only the deployer's certificate (see ``docs/security.md``).

All of that lives in :func:`serve_weavelet`, an async context manager. In a process
that does not run ``main``, :func:`run_weavelet` serves until the envelope asks it to
stop or SIGTERM/SIGINT arrives, runs the components' ``shutdown`` hooks, and exits the
process with status 0: it never returns. In the process that runs ``main`` it returns
the main ``Instance`` and the services keep running in the process's root task
(:mod:`._lifetime`); shutdown hooks run when the event loop ends, as in a
single-process app.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final

import anyio
import anyio.abc

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver._runtime import _metrics, _tracing
from pyweaver._runtime._balancer import SlotBalancer
from pyweaver._runtime._component import Instance
from pyweaver._runtime._lifetime import start_root_task
from pyweaver._runtime._listener import Listener, ListenerOptions, bind_listener
from pyweaver._runtime._logging import configure_logging
from pyweaver._runtime._placement import CallClient
from pyweaver._runtime._registry import Registry
from pyweaver._runtime._shipping import LogShipper, SpanShipper
from pyweaver._runtime._signals import route_sigterm_like_sigint
from pyweaver._runtime._weavelet import Weavelet
from pyweaver._version import __version__
from pyweaver.contract import _messages as m
from pyweaver.contract._bootstrap import Bootstrap, unpack_config
from pyweaver.contract._config import AppConfig
from pyweaver.contract._tls import identity_group, is_deployer

__all__ = [
    "MultiPlacement",
    "SlotBalancer",
    "WeaveletAgent",
    "run_weavelet",
    "serve_weavelet",
]

_LOG_BATCH: Final = 256  # entries: ship at once when this many are waiting
_LOG_INTERVAL: Final = 0.1  # seconds a batch may gather before it is shipped
_LOG_IDLE_POLL: Final = 1.0  # seconds between looks for entries logged by other threads
_REPLICA_WAIT: Final = 15.0  # seconds a call waits for some replica of its group
_PARENT_POLL: Final = 0.5  # seconds between checks that the deployer still runs
_MAX_PENDING_SPANS: Final = 100_000  # spans kept while the envelope is slow; older dropped


class _GroupClient:
    """The call client that reaches one group's replicas, and its routing state."""

    def __init__(self, client: call.Client, balancer: SlotBalancer, info: m.RoutingInfo) -> None:
        self.client = client
        self.balancer = balancer
        self.version = info.version

    def update(self, info: m.RoutingInfo) -> None:
        if info.version < self.version:
            return  # an older push overtaken by a newer one
        self.version = info.version
        self.balancer.update(info)
        self.client.update_endpoints(sorted(info.replicas.values()))


class MultiPlacement:
    """Placement of a weavelet deployed by an envelope (see the module docstring)."""

    def __init__(self, agent: WeaveletAgent) -> None:
        self._agent = agent
        self._local = set(agent.bootstrap.components) | {agent.bootstrap.group}

    def is_local(self, component: str) -> bool:
        return component in self._local

    async def activate(self, component: str) -> None:
        if component not in self._local:
            await self._agent.activate(component)

    async def client(self, component: str) -> CallClient:
        return await self._agent.client(component)

    async def listener(self, name: str, options: ListenerOptions | None) -> Listener:
        return await self._agent.listener(name, options)


class WeaveletAgent:
    """The control-plane side of one deployed weavelet (made by :func:`serve_weavelet`).

    Attributes:
        bootstrap: what the envelope said.
        weavelet: the process's weavelet.
        stopped: set when the envelope (or a signal) asks the weavelet to stop.
    """

    def __init__(
        self,
        bootstrap: Bootstrap,
        config: AppConfig,
        registry: Registry,
        fakes: Mapping[str, object] | None,
    ) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.registry = registry
        self.fingerprint = registry.fingerprint()
        tls = bootstrap.tls_files()
        # Made once: every connection of this process shares them.
        self._server_tls: ssl.SSLContext | None = tls.server_context() if tls else None
        self._client_tls: ssl.SSLContext | None = tls.client_context() if tls else None
        self.weavelet = Weavelet(
            registry,
            config,
            MultiPlacement(self),
            fakes=fakes,
            deployment_id=bootstrap.deployment_id,
            replica_id=bootstrap.replica_id,
            group=bootstrap.group,
        )
        self.stopped = anyio.Event()
        self.logs = LogShipper()
        self.spans = SpanShipper()
        self._group: anyio.abc.TaskGroup | None = None
        self._control: call.Client | None = None
        self._groups: dict[str, _GroupClient] = {}  # group -> its client
        self._latest: dict[str, m.RoutingInfo] = {}  # group -> newest routing info seen
        self._component_group: dict[str, str] = {}
        self._activating: dict[str, anyio.Event] = {}
        self._opening: dict[str, anyio.Event] = {}
        self._failed: dict[str, str] = {}

    def stop(self) -> None:
        self.stopped.set()

    # -- control calls ---------------------------------------------------------------

    async def _call(self, method: m.ControlMethod[Any, Any], request: object) -> Any:
        if self._control is None:
            raise PyWeaverError("this weavelet is stopped: it no longer talks to its deployer")
        return m.decode(method.reply, await self._control.call(method.key, m.encode(request)))

    # -- placement -------------------------------------------------------------------

    async def activate(self, component: str) -> None:
        """Ask the deployer to run ``component`` (once) and open its group's client."""
        while component not in self._component_group:
            pending = self._activating.get(component)
            if pending is not None:
                await pending.wait()
                continue
            self._activating[component] = done = anyio.Event()
            try:
                spec = self.registry.specs.get(component)
                routed = spec is not None and spec.router_type is not None
                info: m.RoutingInfo = await self._call(
                    m.ACTIVATE_COMPONENT, m.ActivateComponent(component=component, routed=routed)
                )
                if info.error:
                    raise PyWeaverError(f"component {component} cannot run: {info.error}")
                await self._open_group(info)
                self._component_group[component] = info.group
            finally:
                del self._activating[component]
                done.set()

    async def client(self, component: str) -> CallClient:
        group = self._component_group.get(component)
        if group is None:
            await self.activate(component)
            group = self._component_group[component]
        return self._groups[group].client

    async def _open_group(self, info: m.RoutingInfo) -> None:
        self._note(info)
        while info.group not in self._groups:
            pending = self._opening.get(info.group)
            if pending is not None:
                await pending.wait()
                continue
            self._opening[info.group] = done = anyio.Event()
            try:
                assert self._group is not None
                await self._group.start(self._hold_group_client, info.group)
            finally:
                del self._opening[info.group]
                done.set()

    async def _hold_group_client(
        self, group: str, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Owns one group's call client for the life of the weavelet."""
        info = self._latest[group]
        balancer = SlotBalancer()
        balancer.update(info)
        async with call.Client(
            sorted(info.replicas.values()),
            deployment_id=self.bootstrap.deployment_id,
            fingerprint=self.fingerprint,
            balancer=balancer,
            # Long enough for the deployer to restart a group whose replicas all died.
            replica_wait=_REPLICA_WAIT,
            ssl_context=self._client_tls,
            call_timeout=self.config.multi.call_timeout,
        ) as client:
            balancer.load = client.in_flight
            holder = _GroupClient(client, balancer, info)
            self._groups[group] = holder
            holder.update(self._latest[group])  # a push may have arrived meanwhile
            task_status.started()
            await anyio.sleep_forever()

    def _note(self, info: m.RoutingInfo) -> None:
        latest = self._latest.get(info.group)
        if latest is None or info.version >= latest.version:
            self._latest[info.group] = info
        holder = self._groups.get(info.group)
        if holder is not None:
            holder.update(info)

    async def listener(self, name: str, options: ListenerOptions | None) -> Listener:
        local_address = (options or ListenerOptions()).local_address
        reply: m.ListenerAddress = await self._call(
            m.GET_LISTENER_ADDRESS, m.ListenerAddressRequest(name=name, local_address=local_address)
        )
        listener = bind_listener(name, reply.address)
        try:
            exported: m.ExportListenerReply = await self._call(
                m.EXPORT_LISTENER,
                m.ExportListener(name=name, address=listener.address, local_address=local_address),
            )
        except BaseException:
            await listener.aclose()
            raise
        if exported.error:
            await listener.aclose()
            raise PyWeaverError(f"listener {name!r}: {exported.error}")
        listener.proxy_addr = exported.proxy_address
        return listener

    # -- authorization (mTLS) --------------------------------------------------------

    def _data_authorizer(self) -> call.Authorizer | None:
        """Calling group -> the method keys of this group it may call (computed once
        here, looked up once per connection)."""
        if self._server_tls is None:
            return None
        deployment = self.bootstrap.deployment_id
        specs = self.registry.specs
        allowed = {
            group: frozenset(
                method.key
                for component in components
                if component in specs
                for method in specs[component].methods.values()
            )
            for group, components in self.bootstrap.tls_callers.items()
        }
        nothing: frozenset[bytes] = frozenset()

        def authorize(identity: str | None) -> frozenset[bytes]:
            group = identity_group(identity, deployment)
            return allowed.get(group, nothing) if group is not None else nothing

        return authorize

    def _control_authorizer(self) -> call.Authorizer | None:
        """Only the deployer's certificate may use WeaveletControl (stop, health...)."""
        if self._server_tls is None:
            return None
        deployment = self.bootstrap.deployment_id
        nothing: frozenset[bytes] = frozenset()

        def authorize(identity: str | None) -> frozenset[bytes] | None:
            return None if is_deployer(identity, deployment) else nothing

        return authorize

    # -- WeaveletControl -------------------------------------------------------------

    def _control_handlers(self) -> dict[bytes, Callable[[bytes], Awaitable[bytes]]]:
        async def update_components(request: m.UpdateComponents) -> m.Empty:
            assert self._group is not None
            for component in request.components:
                if component in self.registry.specs and not self.weavelet.built(component):
                    self._group.start_soon(self._build, component)
            return m.Empty()

        async def update_routing(info: m.RoutingInfo) -> m.Empty:
            self._note(info)
            return m.Empty()

        async def health(request: m.Empty) -> m.Health:
            built = [c for c in self.bootstrap.components if self.weavelet.built(c)]
            return m.Health(healthy=True, components=built, failed=dict(self._failed))

        async def metrics(request: m.Empty) -> m.MetricsReply:
            process = {
                "serviceweaver_group": self.bootstrap.group,
                "serviceweaver_node": self.bootstrap.replica_id,
            }
            return m.MetricsReply(samples=_metrics.snapshot(process_labels=process))

        async def shutdown(request: m.Empty) -> m.Empty:
            self.stop()
            return m.Empty()

        return {
            m.UPDATE_COMPONENTS.key: m.UPDATE_COMPONENTS.handler(update_components),
            m.UPDATE_ROUTING.key: m.UPDATE_ROUTING.handler(update_routing),
            m.GET_HEALTH.key: m.GET_HEALTH.handler(health),
            m.GET_METRICS.key: m.GET_METRICS.handler(metrics),
            m.SHUTDOWN.key: m.SHUTDOWN.handler(shutdown),
        }

    async def _watch_parent(self, parent: int) -> None:
        """Stop when the deployer that started this process is gone (killed with
        SIGKILL, say), so that no weavelet outlives its deployment. The process is
        then re-parented, which changes ``getppid()``."""
        while os.getppid() == parent:
            await anyio.sleep(_PARENT_POLL)
        if self.bootstrap.run_main:
            os.kill(os.getpid(), signal.SIGTERM)  # main unwinds as on a deployer stop
        else:
            self.stop()

    async def _build(self, component: str) -> None:
        try:
            await self.weavelet.get_impl(component)
        except Exception as exc:
            # The component logged why; callers see the error on their calls.
            self._failed[component] = f"{type(exc).__name__}: {exc}"

    # -- running ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _serving(self, *, watch_parent: bool = True) -> AsyncIterator[WeaveletAgent]:
        bootstrap = self.bootstrap
        served = [c for c in bootstrap.components if c in self.registry.specs]
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                async with (
                    call.Client(
                        [bootstrap.envelope_address],
                        deployment_id=bootstrap.deployment_id,
                        fingerprint=m.CONTROL_FINGERPRINT,
                        ssl_context=self._client_tls,
                    ) as control,
                    call.serve(
                        bootstrap.data_address,
                        self.weavelet.handlers(served),
                        deployment_id=bootstrap.deployment_id,
                        fingerprint=self.fingerprint,
                        ssl_context=self._server_tls,
                        authorize=self._data_authorizer(),
                    ),
                    call.serve(
                        bootstrap.control_address,
                        self._control_handlers(),
                        deployment_id=bootstrap.deployment_id,
                        fingerprint=m.CONTROL_FINGERPRINT,
                        ssl_context=self._server_tls,
                        authorize=self._control_authorizer(),
                    ),
                ):
                    self._control = control
                    self.logs.start()
                    group.start_soon(self.logs.run, control)
                    if bootstrap.trace_sample_ratio > 0:
                        group.start_soon(self.spans.run, control)
                    if watch_parent:
                        group.start_soon(self._watch_parent, os.getppid())
                    reply: m.RegisterReply = await self._call(
                        m.REGISTER,
                        m.Register(
                            replica_id=bootstrap.replica_id,
                            pid=os.getpid(),
                            control_address=bootstrap.control_address,
                            data_address=bootstrap.data_address,
                            fingerprint=self.fingerprint,
                            version=__version__,
                        ),
                    )
                    try:
                        if reply.error:
                            raise PyWeaverError(
                                f"the envelope refused this weavelet: {reply.error}"
                            )
                        yield self
                    except BaseException:
                        await self.logs.close(control, ship=False)
                        raise
                    await self.logs.close(control)
            finally:
                group.cancel_scope.cancel()
                self._control = None


def _load_config(bootstrap: Bootstrap) -> AppConfig:
    return unpack_config(bootstrap.config)


@contextlib.asynccontextmanager
async def serve_weavelet(
    bootstrap: Bootstrap,
    *,
    fakes: Mapping[str, object] | None = None,
    registry: Registry | None = None,
    process_logging: bool = True,
    watch_parent: bool = True,
) -> AsyncIterator[WeaveletAgent]:
    """Run a weavelet's services for the span of ``async with`` (see the module
    docstring). With ``process_logging`` every stdlib log record of this process is
    shipped to the envelope; with ``watch_parent`` the weavelet stops when the process
    that started it dies (both off for an in-process weavelet in a test)."""
    config = _load_config(bootstrap)
    agent = WeaveletAgent(bootstrap, config, registry or Registry(), fakes)
    if process_logging:
        level: Any = bootstrap.log_level
        configure_logging(
            level=level,
            fmt=None,
            sink=agent.logs.sink,
            replica=bootstrap.replica_id,
            group=bootstrap.group,
            app=config.name,
            deployment=bootstrap.deployment_id,
        )
    if process_logging and bootstrap.trace_sample_ratio > 0:
        # Spans of this process go to the envelope; trace context crosses every call.
        _tracing.enable_tracing(
            agent.spans.processor(),
            sample_ratio=min(bootstrap.trace_sample_ratio, 1.0),
            sample_rate=config.telemetry.sample_rate,
            service_name=config.name,
            resource_attributes={
                "pyweaver.deployment": bootstrap.deployment_id,
                "pyweaver.group": bootstrap.group,
                "pyweaver.replica": bootstrap.replica_id,
            },
        )
        call.enable_tracing(True)
    async with agent._serving(watch_parent=watch_parent):
        yield agent


# -- the process entry points --------------------------------------------------------------

_main_agent: WeaveletAgent | None = None


async def run_weavelet() -> Instance:
    """``weaver.init()`` in a process started by an envelope (see the module docstring)."""
    bootstrap = Bootstrap.from_environ()
    if bootstrap.run_main:
        return await _start_main(bootstrap)
    await _serve_until_stopped(bootstrap)
    # Never return into the app's main: this process only serves its group.
    _exit(0)
    raise AssertionError("unreachable")  # pragma: no cover


def _exit(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


async def _serve_until_stopped(bootstrap: Bootstrap) -> None:
    async with serve_weavelet(bootstrap) as agent, anyio.create_task_group() as group:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    agent.stop()
                    return

        group.start_soon(on_signals)
        await agent.stopped.wait()
        await agent.weavelet.shutdown()
        group.cancel_scope.cancel()


async def _start_main(bootstrap: Bootstrap) -> Instance:
    global _main_agent
    if _main_agent is None:
        _main_agent = await start_root_task(partial(_serve_main, bootstrap))
        route_sigterm_like_sigint()
    return _main_agent.weavelet.main_instance()


async def _serve_main(
    bootstrap: Bootstrap,
    *,
    task_status: anyio.abc.TaskStatus[WeaveletAgent] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The weavelet of the process that runs main, from ``init`` to the end of the
    event loop (see :mod:`._lifetime`); shutdown hooks run while it still ships logs."""
    global _main_agent
    async with serve_weavelet(bootstrap) as agent:
        try:
            task_status.started(agent)
            await anyio.sleep_forever()
        finally:
            _main_agent = None
            await agent.weavelet.shutdown()


def main() -> None:
    """``python -m pyweaver._runtime``: a weavelet that imports the app itself (the
    bootstrap's ``app`` and ``sys_path``) instead of running its main."""
    from pyweaver._runtime._appload import load_app

    bootstrap = Bootstrap.from_environ()
    for directory in reversed(bootstrap.sys_path):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    for target in bootstrap.app:
        load_app(target)
    backend = bootstrap.backend or "asyncio"
    # Nothing but pyweaver runs in this process: asyncio may as well be uvloop.
    options = call.use_uvloop() if backend == "asyncio" else {}
    anyio.run(run_weavelet, backend=backend, backend_options=options)
