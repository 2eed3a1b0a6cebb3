"""Telemetry: the weavelets' logs, spans and metrics, and the deployment's status.

Log entries and spans arrive from every envelope and go to the sinks the deployer was
given (the log store, the console, the trace store); the deployer's own messages
(restarts, crash loops, listeners) become log entries of component ``pyweaver.multi``.
Status and metrics are collected on demand by asking every live weavelet, each answer
bounded in time so that one stuck weavelet cannot stall the whole report.

A replica's ``status`` in the report is one word: ``starting`` until its weavelet
registered *and* every component the deployment activated in its group finished
``init`` (the weavelet's health reply lists only those), then ``healthy``; or
``unhealthy``, ``failed`` (a component's construction failed), ``unresponsive`` (it
failed the deployer's periodic health checks and is out of rotation until it answers),
``restarting``, ``stopped``. A group in a crash loop carries the reason in ``degraded``
(empty otherwise) while its slots keep being retried. Each replica also carries its
process's CPU time and resident memory.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import attrs

from pyweaver._errors import PyWeaverError
from pyweaver._net import ASGIApp, Receive, Scope, Send
from pyweaver.contract import MAIN
from pyweaver.contract._logentry import LogEntry
from pyweaver.contract._metrics import add_labels, merge_snapshots
from pyweaver.deployers._exposition import encoder_for
from pyweaver.deployers._procstat import process_usage
from pyweaver.deployers.multi._groups import Group, Slot
from pyweaver.envelope import Envelope

__all__ = ["LogSink", "SpanSink", "Telemetry", "fan_out", "replica_status", "scrape_app"]

LogSink = Callable[[Sequence[LogEntry]], None]
SpanSink = Callable[[Sequence[dict[str, Any]]], None]

_HEALTH_TIMEOUT = 2.0  # seconds one replica may take to answer a status request
_METRICS_TIMEOUT = 5.0  # ... and a metrics request


@attrs.define
class Telemetry:
    """Where one deployment's logs and spans go, and how its status and metrics are
    gathered. The sinks may be replaced at any time (the CLI does, after start)."""

    app: str
    deployment_id: str
    log_sink: LogSink | None = None
    span_sink: SpanSink | None = None

    def handle_logs(self, entries: Sequence[LogEntry]) -> None:
        if self.log_sink is None:
            return
        app = self.app
        self.log_sink([entry if entry.app else attrs.evolve(entry, app=app) for entry in entries])

    def handle_spans(self, spans: Sequence[dict[str, Any]]) -> None:
        if self.span_sink is not None:
            self.span_sink(spans)

    def log_system(self, level: str, message: str) -> None:
        """A log entry of the deployer itself."""
        if self.log_sink is None:
            return
        self.log_sink(
            [
                LogEntry(
                    time_ns=time.time_ns(),
                    level=level,
                    message=message,
                    component="pyweaver.multi",
                    app=self.app,
                    deployment=self.deployment_id,
                    source="logger",
                )
            ]
        )

    async def status(
        self, groups: Iterable[Group], listeners: list[dict[str, object]], started: float
    ) -> dict[str, Any]:
        """The deployment's state as plain data (groups, replicas, listeners)."""
        report = []
        for group in groups:
            replicas = []
            for slot in group.slots:
                envelope = slot.envelope
                health: dict[str, Any] = {}
                if envelope is not None and slot.state == "ready":
                    health = await _health(envelope)
                    health["starting"] = _still_starting(slot, health)
                pid = envelope.pid if envelope is not None else 0
                replicas.append(
                    {
                        "slot": slot.id,
                        "replica": slot.replica_id,
                        "pid": pid,
                        "state": slot.state,
                        "status": replica_status(slot.state, health),
                        "starts": slot.starts,
                        "restarts": max(slot.starts - 1, 0),
                        "last_exit": slot.last_exit,
                        "health": health,
                        "usage": process_usage(pid) if pid else None,
                    }
                )
            report.append(
                {
                    "name": group.name,
                    "components": list(group.components),
                    "activated": sorted(group.activated),
                    "routed": group.routed,
                    "degraded": group.degraded,
                    "replicas": replicas,
                }
            )
        return {
            "deployment": self.deployment_id,
            "app": self.app,
            "started": started,
            "groups": report,
            "listeners": listeners,
        }

    async def metrics(
        self, groups: Iterable[Group], *, per_replica: bool = False
    ) -> list[dict[str, Any]]:
        """Every live weavelet's metrics, merged, labelled with app and version; with
        ``per_replica``, each replica's samples are kept apart, labelled with
        ``serviceweaver_group`` and ``serviceweaver_node`` (the replica id)."""
        snapshots: list[list[dict[str, Any]]] = []

        async def collect(slot: Slot, envelope: Envelope) -> None:
            with anyio.move_on_after(_METRICS_TIMEOUT):
                try:
                    samples = await envelope.metrics()
                except PyWeaverError:
                    return
                if per_replica:
                    node = slot.replica_id
                    labels = {"serviceweaver_group": slot.group.name, "serviceweaver_node": node}
                    samples = add_labels(samples, labels)
                snapshots.append(samples)

        async with anyio.create_task_group() as tasks:
            for group in groups:
                for slot in group.live():
                    if slot.envelope is not None:
                        tasks.start_soon(collect, slot, slot.envelope)
        labels = {
            "serviceweaver_app": self.app,
            "serviceweaver_version": self.deployment_id,
        }
        return add_labels(merge_snapshots(snapshots), labels)


def _still_starting(slot: Slot, health: dict[str, Any]) -> list[str]:
    """The components activated in ``slot``'s group whose ``init`` has not returned in
    its weavelet (neither built nor failed). Main is not a built component."""
    done = set(health.get("built") or ()) | set(health.get("failed") or ())
    wanted = (slot.group.activated & set(slot.group.components)) - {MAIN}
    return sorted(wanted - done)


def replica_status(state: str, health: dict[str, Any]) -> str:
    """One word for a replica (see the module docstring)."""
    if state != "ready":
        return state
    if not health:
        return "starting"
    if not health.get("healthy"):
        return "unhealthy"
    if health.get("failed"):
        return "failed"
    if health.get("starting"):
        return "starting"
    return "healthy"


async def _health(envelope: Envelope) -> dict[str, Any]:
    health: dict[str, Any] = {"healthy": False, "error": f"no answer in {_HEALTH_TIMEOUT:g} s"}
    with anyio.move_on_after(_HEALTH_TIMEOUT):
        try:
            reply = await envelope.health()
            health = {"healthy": reply.healthy, "built": reply.components, "failed": reply.failed}
        except PyWeaverError as exc:
            health = {"healthy": False, "error": str(exc)}
    return health


def fan_out(*sinks: SpanSink | None) -> SpanSink:
    """One span sink feeding each of ``sinks`` (the trace store, an OTLP exporter)."""
    present = [sink for sink in sinks if sink is not None]

    def sink(spans: Sequence[dict[str, Any]]) -> None:
        for each in present:
            each(spans)

    return sink


def scrape_app(collect: Callable[[], Awaitable[list[dict[str, Any]]]]) -> ASGIApp:
    """An ASGI app answering ``GET /metrics`` with ``collect()``'s samples, in the
    format the scraper's ``Accept`` header asks for (OpenMetrics or Prometheus text);
    ``[telemetry] metrics_address`` serves it for the deployment's lifetime."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") != "/metrics":
            status, kind, body = 404, "text/plain", b"not found: scrape /metrics\n"
        else:
            accept = b""
            for name, value in scope.get("headers", ()):
                if name == b"accept":
                    accept = bytes(value)
            encode, kind = encoder_for(accept.decode("latin-1"))
            status, body = 200, encode(await collect())
        headers = [(b"content-type", kind.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
