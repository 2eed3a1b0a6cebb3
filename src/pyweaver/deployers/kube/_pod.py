"""The pod's entrypoint: ``python -m pyweaver.deployers.kube --config-dir DIR``.

Theory of operation
===================

A pod is one replica of one colocation group. There is no deployer process in the
cluster, so each pod runs a small one of its own, :class:`PodDeployer`, beside the app:

1. it reads the mounted ConfigMap (``weaver.toml`` and ``kube.json``, a
   :class:`~._plan.PodConfig`) and its group from ``PYWEAVER_KUBE_GROUP``;
2. it starts the app as its child process in an :class:`~pyweaver.envelope.Envelope`
   whose weavelet serves the group's components on ``tcp://0.0.0.0:<data port>`` (the
   port every pod of every group uses, so a peer needs only the pod's IP);
3. it answers the weavelet's control calls: ``activate_component`` of a component in
   another group starts a *watch* of that group's headless Service name
   (:mod:`._discovery`) and replies with its ready pods; every change found by the
   watch is pushed to the weavelet as new routing info. Components of the pod's own
   group are local calls and never reach this code. Listeners bind
   ``0.0.0.0:<the listener's port>`` from ``kube.json``; their Services do the rest;
4. it serves ``/healthz`` on the health port for the readiness and liveness probes:
   200 once the weavelet has registered and reports itself healthy, 503 before;
5. it prints the app's log entries on stdout as JSON lines (``kubectl logs``).

With mTLS (``kube.json``'s ``tls_dir`` is set: ``[kube] mtls``, the default) the pod
reads its group's mounted TLS Secret there (the CA certificate, the group's certificate
and key, and its control plane's) and its group's ``callers`` from ``kube.json``: the
weavelet's data port then speaks only mutual TLS 1.3, each calling group may call only
the components its code references, and the control channel uses the deployer's
certificate (:class:`~pyweaver.deployers._node.NodeTls`).

When the app process ends (``main`` returned, or it crashed) the pod's entrypoint
exits with its status and Kubernetes restarts the container. On SIGTERM (pod deletion,
scale-down, rollout) the app is stopped politely: SIGTERM, a grace period, SIGKILL.

For running pods as local processes (tests), ``PYWEAVER_KUBE_BIND_HOST``,
``PYWEAVER_KUBE_DATA_PORT`` and ``PYWEAVER_KUBE_HEALTH_PORT`` override the bind host
and ports, ``PYWEAVER_KUBE_TLS_DIR`` the Secret's mount point, and
``PYWEAVER_KUBE_RESOLVE_FILE`` replaces DNS (:class:`FileResolver`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from pyweaver._errors import PyWeaverError
from pyweaver._net import format_address
from pyweaver.contract import AppConfig, load_config
from pyweaver.contract import messages as m
from pyweaver.contract._logentry import LogEntry, format_json
from pyweaver.contract._tls import TlsFiles
from pyweaver.deployers._node import ACTIVATION_WAIT, NodeDeployer, NodeTls
from pyweaver.deployers.kube._discovery import (
    RESOLVE_FILE_ENV,
    DnsResolver,
    FileResolver,
    Resolver,
    routing_info,
)
from pyweaver.deployers.kube._manifests import GROUP_ENV
from pyweaver.deployers.kube._plan import (
    CONFIG_DIR,
    DEPLOYER_CERT,
    DEPLOYER_KEY,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    PodConfig,
)
from pyweaver.envelope import Child, Envelope, ProcessChild

__all__ = ["PodDeployer", "main"]

BIND_HOST_ENV: Final = "PYWEAVER_KUBE_BIND_HOST"
DATA_PORT_ENV: Final = "PYWEAVER_KUBE_DATA_PORT"
HEALTH_PORT_ENV: Final = "PYWEAVER_KUBE_HEALTH_PORT"
TLS_DIR_ENV: Final = "PYWEAVER_KUBE_TLS_DIR"
_HEALTH_TIMEOUT: Final = 2.0  # seconds /healthz waits for the weavelet's answer
_MAX_REQUEST: Final = 8192  # bytes of an HTTP request head /healthz reads at most


class ResolverDiscovery:
    """Discovery by look-ups: each group's headless Service name, resolved every
    ``discovery_interval`` seconds; a new version whenever its ready pods change."""

    def __init__(self, pod: PodConfig, resolver: Resolver) -> None:
        self.pod = pod
        self.resolver = resolver
        self._found: dict[str, tuple[int, list[str]]] = {}  # group -> (version, endpoints)

    async def next(self, group: str, after: int, *, routed: bool) -> m.RoutingInfo:
        spec = self.pod.groups[group]
        while True:
            version, endpoints = self._found.get(group, (0, []))
            if version > after:
                return routing_info(
                    group, spec.components, version, endpoints, routed=routed or spec.routed
                )
            if version > 0:
                await anyio.sleep(self.pod.discovery_interval)
            found = await self.resolver.resolve(spec.service, self.pod.data_port)
            if version == 0 or found != endpoints:
                self._found[group] = (version + 1, found)


def pod_tls(pod: PodConfig, group: str, directory: str) -> NodeTls | None:
    """The pod's mTLS from its mounted Secret in ``directory`` ("": none); an error
    naming the Secret's missing file if it is not all there."""
    if not directory:
        return None
    base = Path(directory)
    missing = [
        name
        for name in (TLS_CA, TLS_CERT, TLS_KEY, DEPLOYER_CERT, DEPLOYER_KEY)
        if not (base / name).is_file()
    ]
    if missing:
        raise PyWeaverError(
            f"mTLS is on but {', '.join(missing)} is missing in {directory} (was the "
            "group's Secret from secret.yaml applied?)"
        )
    ca = str(base / TLS_CA)
    return NodeTls(
        group=TlsFiles(ca=ca, cert=str(base / TLS_CERT), key=str(base / TLS_KEY)),
        deployer=TlsFiles(ca=ca, cert=str(base / DEPLOYER_CERT), key=str(base / DEPLOYER_KEY)),
        callers={k: list(v) for k, v in pod.groups[group].callers.items()},
    )


class PodDeployer(NodeDeployer):
    """One pod's deployer (see the module docstring); the envelope's handler.

    Args:
        pod: ``kube.json``.
        group: the pod's group.
        config: weaver.toml, with its path inside the app's directory.
        child: how to start the app (default: its argv, in its directory).
        resolver: how to look up peer groups (default: DNS).
        bind_host, data_port, health_port: where to serve (default: all interfaces,
            the ports of ``kube.json``).
        replica_id: this pod's id (default: the pod's name).
        log: where log lines go (default: stdout).
        tls_dir: where the group's TLS Secret is mounted (default: ``kube.json``'s
            ``tls_dir``; "" there: no mTLS).
    """

    log_source = "pod"

    def __init__(
        self,
        pod: PodConfig,
        group: str,
        config: AppConfig,
        *,
        child: Child | None = None,
        resolver: Resolver | None = None,
        bind_host: str = "0.0.0.0",
        data_port: int | None = None,
        health_port: int | None = None,
        replica_id: str = "",
        log: Any = None,
        tls_dir: str | None = None,
    ) -> None:
        if group not in pod.groups:
            raise PyWeaverError(
                f"{GROUP_ENV}={group!r} is no group of the app (groups: {', '.join(pod.groups)})"
            )
        self.pod = pod
        self.resolver: Resolver = resolver or DnsResolver()
        self.bind_host = bind_host
        self.data_port = data_port if data_port is not None else pod.data_port
        self.health_port = health_port if health_port is not None else pod.health_port
        self.log = log or (lambda line: print(line, flush=True))
        self.health_address = ""
        super().__init__(
            deployment_id=pod.deployment_id,
            app=pod.app,
            group=group,
            groups={name: spec.components for name, spec in pod.groups.items()},
            config=config,
            child=child,
            discovery=ResolverDiscovery(pod, self.resolver),
            data_address=f"tcp://{format_address(bind_host, self.data_port)}",
            replica_id=replica_id or socket.gethostname(),
            log_sink=self._print_logs,
            routed=[name for name, spec in pod.groups.items() if spec.routed],
            activation_wait=ACTIVATION_WAIT,
            tls=pod_tls(pod, group, pod.tls_dir if tls_dir is None else tls_dir),
        )

    @contextlib.asynccontextmanager
    async def serving(self, tasks: anyio.abc.TaskGroup) -> AsyncIterator[None]:
        listener = await anyio.create_tcp_listener(
            local_host=self.bind_host, local_port=self.health_port, reuse_port=False
        )
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.health_address = format_address(self.bind_host, port)
        tasks.start_soon(listener.serve, self._serve_health)
        yield

    def make_child(self) -> Child:
        config = self.config
        env = {**os.environ, **config.env_vars()}
        env.pop("PYWEAVER_CONFIG", None)
        argv = config.app_argv()
        cwd = str(config.path.parent) if config.path is not None else None
        return ProcessChild(argv, env=env, cwd=cwd)

    def _print_logs(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            self.log(format_json(entry))

    def unknown_component(self, component: str) -> str:
        return (
            f"{component} is not in this deployment's kube.json (was the app "
            "changed after `pyweaver kube deploy`?)"
        )

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        listener = self.pod.listeners.get(request.name)
        if listener is None:
            self.log_system(
                "warning",
                f"listener {request.name!r} is not in kube.json: it gets a random port and "
                "no Service",
            )
            return m.ListenerAddress(address=format_address(self.bind_host, 0))
        return m.ListenerAddress(address=format_address(self.bind_host, listener.port))

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        # The listener's Service spreads connections; there is no proxy in the pod.
        return m.ExportListenerReply()

    # -- /healthz -------------------------------------------------------------------------

    async def _serve_health(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            with anyio.move_on_after(_HEALTH_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) < _MAX_REQUEST:
                    try:
                        head += await stream.receive(4096)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].decode("latin-1") if len(parts) >= 2 else ""
            if path.split("?", 1)[0] != "/healthz":
                status, body = "404 Not Found", b"not found\n"
            elif await self.healthy():
                status, body = "200 OK", b"ok\n"
            else:
                status, body = "503 Service Unavailable", b"not ready\n"
            response = (
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1") + body
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(response)


# -- the process entry point --------------------------------------------------------------


def _port_override(name: str) -> int | None:
    text = os.environ.get(name, "")
    return int(text) if text else None


def _load(args: argparse.Namespace) -> tuple[PodConfig, AppConfig, str]:
    """The mounted ConfigMap and the pod's group (read before the event loop starts)."""
    config_dir = Path(args.config_dir)
    pod = PodConfig.from_json((config_dir / "kube.json").read_text(encoding="utf-8"))
    app_dir = Path(args.app_dir or pod.app_dir).resolve()
    # weaver.toml's relative paths (binary) are relative to the app's directory.
    config = attrs.evolve(load_config(config_dir / "weaver.toml"), path=app_dir / "weaver.toml")
    return pod, config, args.group or os.environ.get(GROUP_ENV, "")


async def _run(pod: PodConfig, config: AppConfig, group: str) -> int:
    resolve_file = os.environ.get(RESOLVE_FILE_ENV, "")
    deployer = PodDeployer(
        pod,
        group,
        config,
        resolver=FileResolver(Path(resolve_file)) if resolve_file else DnsResolver(),
        bind_host=os.environ.get(BIND_HOST_ENV, "0.0.0.0"),
        data_port=_port_override(DATA_PORT_ENV),
        health_port=_port_override(HEALTH_PORT_ENV),
        replica_id=os.environ.get("POD_NAME", ""),
        tls_dir=(os.environ.get(TLS_DIR_ENV) or pod.tls_dir) if pod.tls_dir else "",
    )
    async with deployer, anyio.create_task_group() as tasks:
        status = 0

        async def until_signal() -> None:
            nonlocal status
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    status = 0
                    tasks.cancel_scope.cancel()
                    return

        async def until_exit() -> None:
            nonlocal status
            status = await deployer.wait()
            tasks.cancel_scope.cancel()

        tasks.start_soon(until_signal)
        tasks.start_soon(until_exit)
    return status


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pyweaver.deployers.kube",
        description="Run one pod of a pyweaver app on Kubernetes.",
    )
    parser.add_argument("--config-dir", default=CONFIG_DIR, help="the mounted ConfigMap")
    parser.add_argument("--app-dir", default="", help="the app's directory (default: kube.json)")
    parser.add_argument("--group", default="", help=f"the pod's group (default: ${GROUP_ENV})")
    args = parser.parse_args(argv)
    try:
        status = anyio.run(_run, *_load(args))
    except PyWeaverError as exc:
        print(f"pyweaver kube pod: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(status if status >= 0 else 128 - status)
