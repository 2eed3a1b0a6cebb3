"""``pyweaver multi dashboard`` (and ``single dashboard``): the running deployments in a
browser.

A small ASGI app, served on loopback by the CLI. Every page is a jinja2 template
(``templates/``) rendered from exactly the JSON its ``/api/...`` twin returns:

* ``/`` — the live deployments (``/api/deployments``);
* ``/deployment/<id>`` — one deployment (``/api/deployment/<id>``): its config, its
  groups with replicas (pid, status — ``starting`` until every component's ``init``
  returned —, restarts, last exit, CPU and memory), listeners, a methods table (calls/s,
  error rate, p50/p99 latency, bytes) over the last minute and since start, per
  component and per calling replica, the component call graph (``graph.svg``, drawn
  here), recent traces (``?min_ms=&errors=1``) each opening in Perfetto, recent error
  logs, and copyable CLI commands;
* ``/traces/<trace id>.json`` — one trace as Chrome trace JSON (for ui.perfetto.dev);
* ``/api/status`` and ``/metrics`` — every deployment's status, and its metrics in the
  Prometheus text format (or OpenMetrics when the scraper asks for it).

Rates over the last minute need two metric snapshots a minute apart: :class:`Dashboard`
keeps a small ring of per-replica snapshots per deployment, filled by :meth:`Dashboard.sample`
(the CLI calls it every few seconds, and every page view does when the newest is old).
Where deployments are and how they are asked is one injectable :class:`Source`, so the
tests run the app on fake status data. The registry's source lists the deployments of
several deployers: ``pyweaver multi dashboard`` (and ``ray dashboard``) shows ``multi``
and ``ray`` deployments side by side, since the deploying process of each serves the
same status endpoint (:mod:`pyweaver.contract._status`) and keeps its logs and spans
where ``multi`` does; each deployment's page offers its own deployer's commands.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote

import anyio
import attrs
import jinja2

from pyweaver._errors import PyWeaverError
from pyweaver.contract._metrics import (
    METHOD_BYTES_REPLY,
    METHOD_BYTES_REQUEST,
    METHOD_COUNT,
    METHOD_ERRORS,
    METHOD_LATENCY,
)
from pyweaver.deployers._exposition import encoder_for
from pyweaver.deployers._logstore import LogStore, level_rank
from pyweaver.deployers._procstat import process_usage
from pyweaver.deployers._registry import Deployment, Registry
from pyweaver.deployers._traces import chrome_trace, read_spans, recent_traces
from pyweaver.deployers.multi._profile import profile_targets, targets_from_status
from pyweaver.deployers.multi._status import METRICS, REPLICA_METRICS, STATUS, fetch

__all__ = [
    "Dashboard",
    "RegistrySource",
    "Source",
    "dashboard_app",
    "method_rows",
    "serve_dashboard",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_WINDOW: Final = 60.0  # seconds: "the last minute"
_RING: Final = 40  # snapshots kept per deployment (every 5 s: a bit over 3 minutes)
_SAMPLE_EVERY: Final = 5.0  # seconds between metric snapshots while the dashboard runs
_STALE: Final = 2.0  # seconds after which a page view takes a fresh snapshot
_PROFILE_SECONDS: Final = 10.0  # a profile link samples this long by default
_PROFILE_MAX_SECONDS: Final = 60.0
_TRACES: Final = 50  # traces listed
_ERROR_LOGS: Final = 30  # error log entries listed
_HERE: Final = Path(__file__).parent
_PERFETTO: Final = "https://ui.perfetto.dev"


class Source(Protocol):
    """Where the dashboard finds deployments and how it asks them (faked in tests)."""

    def deployments(self) -> list[Deployment]: ...

    async def ask(self, deployment: Deployment, method: bytes) -> Any: ...

    def logs_dir(self, deployment: Deployment) -> Path: ...


SHOWN_WITH: Final[dict[str, tuple[str, ...]]] = {
    "multi": ("multi", "ray"),
    "ray": ("multi", "ray"),
    "single": ("single",),
}
"""The deployers whose deployments each deployer's dashboard lists."""


@attrs.define
class RegistrySource:
    """The live deployments of the per-user registry made by ``deployer`` and those
    listed beside it (:data:`SHOWN_WITH`)."""

    root: Path | None = None
    deployer: str = "multi"

    def deployments(self) -> list[Deployment]:
        shown = SHOWN_WITH.get(self.deployer, (self.deployer,))
        return [d for d in Registry(self.root).list() if d.deployer in shown]

    async def ask(self, deployment: Deployment, method: bytes) -> Any:
        return await fetch(deployment.status_address, deployment.id, method)

    def logs_dir(self, deployment: Deployment) -> Path:
        return Registry(self.root).logs_dir(deployment.id)


# -- the methods table -----------------------------------------------------------------------


@attrs.define
class _Totals:
    """Cumulative figures of one method (over some set of callers/replicas)."""

    calls: float = 0
    errors: float = 0
    bounds: list[float] = attrs.Factory(list)
    counts: list[float] = attrs.Factory(list)
    request_bytes: float = 0
    reply_bytes: float = 0

    def minus(self, other: _Totals | None) -> _Totals:
        if other is None:
            return self
        counts = self.counts
        if other.counts and len(other.counts) == len(counts):
            counts = [max(a - b, 0) for a, b in zip(counts, other.counts, strict=True)]
        return _Totals(
            calls=max(self.calls - other.calls, 0),
            errors=max(self.errors - other.errors, 0),
            bounds=self.bounds,
            counts=counts,
            request_bytes=max(self.request_bytes - other.request_bytes, 0),
            reply_bytes=max(self.reply_bytes - other.reply_bytes, 0),
        )


Key = tuple[str, ...]


def _totals(samples: Iterable[dict[str, Any]], per_replica: bool) -> dict[Key, _Totals]:
    totals: dict[Key, _Totals] = {}
    for sample in samples:
        name = sample["name"]
        if name not in (METHOD_COUNT, METHOD_ERRORS, METHOD_LATENCY) and name not in (
            METHOD_BYTES_REQUEST,
            METHOD_BYTES_REPLY,
        ):
            continue
        labels = sample["labels"]
        key: Key = (labels.get("component", ""), labels.get("method", ""))
        if per_replica:
            key = (labels.get("serviceweaver_node", ""), *key)
        entry = totals.setdefault(key, _Totals())
        if name == METHOD_COUNT:
            entry.calls += sample["value"]
        elif name == METHOD_ERRORS:
            entry.errors += sample["value"]
        elif name == METHOD_LATENCY:
            if not entry.counts:
                entry.bounds = list(sample["bounds"])
                entry.counts = [0] * len(sample["counts"])
            if list(sample["bounds"]) == entry.bounds:
                entry.counts = [a + b for a, b in zip(entry.counts, sample["counts"], strict=True)]
        elif name == METHOD_BYTES_REQUEST:
            entry.request_bytes += sample["sum"]
        else:
            entry.reply_bytes += sample["sum"]
    return totals


def percentile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram (Prometheus ``le`` buckets, see
    ``contract._metrics``), interpolated linearly inside its bucket; ``None`` if empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = bounds[index - 1] if index > 0 else 0.0
            upper = bounds[index] if index < len(bounds) else lower
            return lower + (upper - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-1] if bounds else None


def _figures(totals: _Totals, seconds: float) -> dict[str, Any]:
    seconds = max(seconds, 1e-9)
    p50 = percentile(totals.bounds, totals.counts, 0.5)
    p99 = percentile(totals.bounds, totals.counts, 0.99)
    return {
        "calls": int(totals.calls),
        "calls_per_s": totals.calls / seconds,
        "errors": int(totals.errors),
        "error_rate": totals.errors / totals.calls if totals.calls else 0.0,
        "p50_ms": None if p50 is None else p50 / 1000,
        "p99_ms": None if p99 is None else p99 / 1000,
        "request_bytes": int(totals.request_bytes),
        "reply_bytes": int(totals.reply_bytes),
        "bytes_per_s": (totals.request_bytes + totals.reply_bytes) / seconds,
    }


def method_rows(
    now: Sequence[dict[str, Any]],
    before: Sequence[dict[str, Any]] | None,
    *,
    window: float,
    uptime: float,
    per_replica: bool = False,
) -> list[dict[str, Any]]:
    """The methods table from per-replica snapshots: ``now`` and ``before`` (taken
    ``window`` seconds earlier; ``None``: no earlier one, then the window is the whole
    uptime). One row per (component, method) — with ``per_replica``, per (calling
    replica, component, method) — with ``minute`` and ``total`` figures."""
    current = _totals(now, per_replica)
    earlier = _totals(before, per_replica) if before is not None else {}
    rows = []
    for key, totals in sorted(current.items()):
        row: dict[str, Any] = {}
        if per_replica:
            row["replica"] = key[0]
        row["component"], row["method"] = key[-2], key[-1]
        if before is None:
            row["minute"] = _figures(totals, uptime)
        else:
            row["minute"] = _figures(totals.minus(earlier.get(key)), window)
        row["total"] = _figures(totals, uptime)
        rows.append(row)
    return rows


# -- the call graph ---------------------------------------------------------------------------

_NODE_W: Final = 190
_NODE_H: Final = 36
_GAP_X: Final = 120
_GAP_Y: Final = 30


def call_graph(components: Iterable[str], samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Nodes and caller → component edges (with call counts) from the method counts,
    laid out in layers (a node one layer right of its furthest caller; cycles cut)."""
    calls: dict[tuple[str, str], float] = {}
    names = set(components)
    for sample in samples:
        if sample["name"] != METHOD_COUNT:
            continue
        labels = sample["labels"]
        caller, callee = labels.get("caller", ""), labels.get("component", "")
        if caller and callee:
            calls[(caller, callee)] = calls.get((caller, callee), 0) + sample["value"]
            names.update((caller, callee))
    layer = dict.fromkeys(names, 0)
    for _ in range(len(names)):  # longest path, bounded: a cycle stops growing here
        changed = False
        for caller, callee in calls:
            if caller != callee and layer[callee] < layer[caller] + 1 < len(names):
                layer[callee] = layer[caller] + 1
                changed = True
        if not changed:
            break
    columns: dict[int, list[str]] = {}
    for name in sorted(names, key=lambda n: (n != "main", n)):
        columns.setdefault(layer[name], []).append(name)
    position: dict[str, tuple[int, int]] = {}
    for column, members in columns.items():
        for row, name in enumerate(members):
            position[name] = (
                20 + column * (_NODE_W + _GAP_X),
                20 + row * (_NODE_H + _GAP_Y),
            )
    most = max(calls.values(), default=1) or 1
    edges = []
    for (caller, callee), count in sorted(calls.items()):
        (x1, y1), (x2, y2) = position[caller], position[callee]
        edges.append(
            {
                "caller": caller,
                "component": callee,
                "calls": int(count),
                "x1": x1 + _NODE_W,
                "y1": y1 + _NODE_H // 2,
                "x2": x2,
                "y2": y2 + _NODE_H // 2,
                "width": round(1 + 4 * math.log1p(count) / math.log1p(most), 2),
            }
        )
    nodes = [{"name": n, "x": x, "y": y} for n, (x, y) in sorted(position.items())]
    width = max((x for x, _ in position.values()), default=0) + _NODE_W + 40
    height = max((y for _, y in position.values()), default=0) + _NODE_H + 40
    return {
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": height,
        "node_width": _NODE_W,
        "node_height": _NODE_H,
    }


# -- the dashboard ---------------------------------------------------------------------------


@attrs.define
class _Snapshot:
    time: float
    samples: list[dict[str, Any]]


class Dashboard:
    """The dashboard's state (snapshot rings, CPU readings) and its ASGI app."""

    def __init__(
        self, source: Source | None = None, *, title: str = "pyweaver multi", deployer: str = ""
    ) -> None:
        self.source: Source = source if source is not None else RegistrySource()
        self.title = title
        self.deployer = deployer or getattr(self.source, "deployer", "multi")
        self._rings: dict[str, deque[_Snapshot]] = {}
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (when, cpu seconds)
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.filters["ms"] = _ms
        self._templates.filters["rate"] = _rate
        self._templates.filters["percent"] = _percent
        self._templates.filters["size"] = _size
        self._templates.filters["age"] = _age
        self._templates.filters["clock"] = _clock

    # -- data ------------------------------------------------------------------------------

    async def sample(self) -> None:
        """Take a per-replica metric snapshot of every live deployment."""
        deployments = self.source.deployments()
        live = {d.id for d in deployments}
        for gone in set(self._rings) - live:
            del self._rings[gone]
        for deployment in deployments:
            await self._sample_one(deployment)

    async def _sample_one(self, deployment: Deployment) -> None:
        try:
            samples = await self.source.ask(deployment, REPLICA_METRICS)
        except PyWeaverError:
            return
        ring = self._rings.setdefault(deployment.id, deque(maxlen=_RING))
        ring.append(_Snapshot(time.time(), list(samples)))

    def _cpu_percent(self, pid: int, cpu_seconds: float) -> float | None:
        now = time.monotonic()
        previous = self._cpu.get(pid)
        self._cpu[pid] = (now, cpu_seconds)
        if previous is None or now - previous[0] <= 0:
            return None
        return 100.0 * (cpu_seconds - previous[1]) / (now - previous[0])

    async def deployments(self) -> list[dict[str, Any]]:
        """``/api/deployments``: every live deployment, with its status summary."""
        result = []
        for deployment in self.source.deployments():
            entry: dict[str, Any] = {"deployment": deployment.to_json(), "error": ""}
            try:
                report = await self.source.ask(deployment, STATUS)
            except PyWeaverError as exc:
                entry["error"] = str(exc)
                report = {}
            replicas = [r for g in report.get("groups", ()) for r in g["replicas"]]
            entry["groups"] = len(report.get("groups", ()))
            entry["replicas"] = len(replicas)
            entry["healthy"] = sum(1 for r in replicas if _status(r) == "healthy")
            entry["listeners"] = report.get("listeners", [])
            result.append(entry)
        return result

    def _find(self, deployment_id: str) -> Deployment | None:
        for deployment in self.source.deployments():
            if deployment.id == deployment_id:
                return deployment
        return None

    async def deployment(
        self, deployment_id: str, *, min_ms: float = 0.0, errors_only: bool = False
    ) -> dict[str, Any] | None:
        """``/api/deployment/<id>``: everything the deployment's page shows."""
        deployment = self._find(deployment_id)
        if deployment is None:
            return None
        error = ""
        try:
            report = await self.source.ask(deployment, STATUS)
        except PyWeaverError as exc:
            error, report = str(exc), {"groups": [], "listeners": []}
        ring = self._rings.get(deployment.id)
        if not ring or time.time() - ring[-1].time > _STALE:
            await self._sample_one(deployment)
            ring = self._rings.get(deployment.id)
        now = time.time()
        uptime = max(now - deployment.started, 1e-3)
        latest: list[dict[str, Any]] = ring[-1].samples if ring else []
        before, window = None, _WINDOW
        if ring and len(ring) > 1:
            # The oldest snapshot within the window (or just beyond it), else none.
            candidates = [s for s in ring if now - s.time >= _WINDOW]
            earlier = candidates[-1] if candidates else ring[0]
            if earlier is not ring[-1]:
                before, window = earlier.samples, max(ring[-1].time - earlier.time, 1e-3)
        groups = []
        for group in report.get("groups", ()):
            replicas = []
            for replica in group["replicas"]:
                # A report's own usage (read on the replica's machine) wins; /proc here
                # only for reports without one.
                if "usage" in replica:
                    usage = replica["usage"]
                else:
                    usage = process_usage(int(replica.get("pid") or 0))
                cpu = None
                if usage:
                    cpu = self._cpu_percent(int(replica["pid"]), float(usage["cpu_seconds"]))
                replicas.append(
                    {
                        **replica,
                        "status": _status(replica),
                        "restarts": replica.get("restarts", max(replica.get("starts", 1) - 1, 0)),
                        "usage": usage,
                        "cpu_percent": cpu,
                    }
                )
            groups.append({**group, "replicas": replicas})
        components = [c for g in groups for c in g["components"]]
        logs_dir = self.source.logs_dir(deployment)
        traces = await anyio.to_thread.run_sync(
            lambda: recent_traces(
                read_spans(logs_dir),
                limit=_TRACES,
                min_duration_ns=int(min_ms * 1e6),
                errors_only=errors_only,
            )
        )
        errors = await anyio.to_thread.run_sync(self._error_logs, logs_dir.parent, deployment.id)
        return {
            "deployment": deployment.to_json(),
            "error": error,
            "uptime": uptime,
            "config": _read_config(deployment.config_path),
            "groups": groups,
            "listeners": report.get("listeners", []),
            "methods": {
                "window_seconds": window if before is not None else uptime,
                "by_component": method_rows(latest, before, window=window, uptime=uptime),
                "by_replica": method_rows(
                    latest, before, window=window, uptime=uptime, per_replica=True
                ),
            },
            "graph": call_graph(components, latest),
            "traces": {
                "min_ms": min_ms,
                "errors_only": errors_only,
                "items": [t.to_json() for t in traces],
            },
            "error_logs": errors,
            "commands": _commands(deployment.deployer or self.deployer, deployment),
        }

    @staticmethod
    def _error_logs(logs_root: Path, deployment_id: str) -> list[dict[str, Any]]:
        recent: deque[dict[str, Any]] = deque(maxlen=_ERROR_LOGS)
        threshold = level_rank("error")
        for entry in LogStore(logs_root).read(deployments=[deployment_id]):
            if level_rank(entry.level) >= threshold:
                recent.append(entry.to_wire())
        return list(reversed(recent))

    def trace_json(self, trace_id: str, deployment_id: str = "") -> dict[str, Any] | None:
        """``/traces/<id>.json``: one trace as Chrome trace JSON, or ``None``."""
        for deployment in self.source.deployments():
            if deployment_id and deployment.id != deployment_id:
                continue
            spans = list(read_spans(self.source.logs_dir(deployment), trace_id))
            if spans:
                return chrome_trace(spans)
        return None

    # -- the ASGI app ----------------------------------------------------------------------

    def render(self, name: str, **context: Any) -> bytes:
        return self._templates.get_template(name).render(title=self.title, **context).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "/")
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        origin = f"http://{_header(scope, b'host') or 'localhost'}"
        status, kind, body, extra = 200, "text/html; charset=utf-8", b"", []
        if path == "/":
            body = self.render(
                "index.html", deployments=await self.deployments(), now=time.time()
            )
        elif path == "/api/deployments":
            status, kind, body = 200, "application/json", _json(await self.deployments())
        elif path.startswith(("/deployment/", "/api/deployment/")):
            deployment_id = path.rsplit("/", 1)[-1]
            try:
                min_ms = float(query.get("min_ms", "0") or 0)
            except ValueError:
                min_ms = 0.0
            data = await self.deployment(
                deployment_id, min_ms=min_ms, errors_only=query.get("errors", "") in ("1", "on")
            )
            if data is None:
                status, kind, body = 404, "text/plain", b"no such live deployment\n"
            elif path.startswith("/api/"):
                kind, body = "application/json", _json(data)
            else:
                for trace in data["traces"]["items"]:
                    url = f"{origin}/traces/{trace['trace_id']}.json?deployment={deployment_id}"
                    trace["json_url"] = url
                    trace["perfetto_url"] = f"{_PERFETTO}/#!/?url={quote(url, safe='')}"
                body = self.render("deployment.html", d=data)
        elif path.startswith("/api/graph/") and path.endswith(".svg"):
            data = await self.deployment(path.removeprefix("/api/graph/").removesuffix(".svg"))
            if data is None:
                status, kind, body = 404, "text/plain", b"no such live deployment\n"
            else:
                kind, body = "image/svg+xml", self.render("graph.svg", g=data["graph"])
        elif path.startswith("/traces/") and path.endswith(".json"):
            trace_id = path.removeprefix("/traces/").removesuffix(".json")
            trace = await anyio.to_thread.run_sync(
                self.trace_json, trace_id, query.get("deployment", "")
            )
            if trace is None:
                status, kind, body = 404, "text/plain", b"no such trace\n"
            else:
                kind, body = "application/json", _json(trace)
                # ui.perfetto.dev fetches the trace from this page's link.
                extra.append((b"access-control-allow-origin", _PERFETTO.encode()))
                disposition = f'inline; filename="trace-{trace_id}.json"'
                extra.append((b"content-disposition", disposition.encode()))
        elif path.startswith("/profile/") and path.endswith(".speedscope.json"):
            deployment_id = path.removeprefix("/profile/").removesuffix(".speedscope.json")
            status, kind, body = await self.profile(
                deployment_id, query.get("group") or None, query.get("seconds", "")
            )
            if status == 200:
                name = f"profile-{deployment_id[:8]}.speedscope.json"
                extra.append((b"content-disposition", f'attachment; filename="{name}"'.encode()))
        elif path == "/static/dashboard.css":
            kind, body = "text/css", (_HERE / "templates" / "dashboard.css").read_bytes()
        elif path == "/api/status":
            kind, body = "application/json", _json(await self._status_all())
        elif path == "/metrics":
            samples: list[dict[str, Any]] = []
            for deployment in self.source.deployments():
                try:
                    samples.extend(await self.source.ask(deployment, METRICS))
                except PyWeaverError:
                    continue
            encode, content_type = encoder_for(_header(scope, b"accept"))
            kind, body = content_type, encode(samples)
        else:
            status, kind, body = 404, "text/plain", b"not found\n"
        headers = [(b"content-type", kind.encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def profile(
        self, deployment_id: str, group: str | None, seconds: str
    ) -> tuple[int, str, bytes]:
        """``/profile/<id>.speedscope.json?group=G&seconds=N``: sample every replica of
        a group (or of the deployment) of a multi deployment with py-spy, as ``pyweaver
        multi profile`` does, and answer the merged speedscope document."""
        deployment = self._find(deployment_id)
        if deployment is None or deployment.deployer != "multi":
            return 404, "text/plain", b"no such live multi deployment\n"
        try:
            duration = min(max(float(seconds or _PROFILE_SECONDS), 1.0), _PROFILE_MAX_SECONDS)
        except ValueError:
            return 400, "text/plain", b"seconds must be a number\n"
        try:
            report = await self.source.ask(deployment, STATUS)
            targets = targets_from_status(report, group)
            document = await profile_targets(targets, duration)
        except PyWeaverError as exc:
            return 503, "text/plain", f"cannot profile: {exc}\n".encode()
        return 200, "application/json", _json(document)

    async def _status_all(self) -> list[dict[str, Any]]:
        results = []
        for deployment in self.source.deployments():
            try:
                report, error = await self.source.ask(deployment, STATUS), ""
            except PyWeaverError as exc:
                report, error = None, str(exc)
            results.append({"deployment": deployment.to_json(), "status": report, "error": error})
        return results


async def serve_dashboard(
    deployer: str, host: str = "127.0.0.1", port: int = 0, *, root: Path | None = None
) -> None:
    """Serve the dashboard of ``deployer``'s deployments on ``host:port`` until SIGINT
    or SIGTERM, printing its URL; take a metric snapshot every few seconds meanwhile."""
    import signal

    import click

    from pyweaver._net import bind_socket, format_address, serve_asgi_socket

    sock = bind_socket(format_address(host, port), what="dashboard")
    address = format_address(*sock.getsockname()[:2])
    click.echo(f"pyweaver {deployer} dashboard: http://{address}/ (Ctrl-C stops it)", err=True)
    dashboard = dashboard_app(root, deployer)
    async with anyio.create_task_group() as tasks:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    tasks.cancel_scope.cancel()
                    return

        async def sample_forever() -> None:
            while True:
                await dashboard.sample()
                await anyio.sleep(_SAMPLE_EVERY)

        tasks.start_soon(on_signals)
        tasks.start_soon(sample_forever)
        await serve_asgi_socket(sock, dashboard)


def dashboard_app(root: Path | None = None, deployer: str = "multi") -> Dashboard:
    """The dashboard over the registry at ``root`` (default: the user's), showing the
    deployments made by ``deployer`` and those shown beside them (:data:`SHOWN_WITH`)."""
    return Dashboard(RegistrySource(root, deployer), title=f"pyweaver {deployer}")


# -- helpers -----------------------------------------------------------------------------------


def _status(replica: dict[str, Any]) -> str:
    status = replica.get("status")
    if status:
        return str(status)
    health = replica.get("health") or {}
    if replica.get("state") != "ready":
        return str(replica.get("state", "-"))
    return "healthy" if health.get("healthy") and not health.get("failed") else "unhealthy"


def _commands(deployer: str, deployment: Deployment) -> list[dict[str, str]]:
    short = deployment.id[:8]
    commands = [
        ("status", f"pyweaver {deployer} status"),
        ("status as JSON", f"pyweaver {deployer} status --json"),
        ("metrics", f"pyweaver {deployer} metrics"),
    ]
    if deployer in ("multi", "ray"):
        commands += [
            ("logs", f"pyweaver {deployer} logs 'deployment == \"{deployment.id}\"'"),
            (
                "follow logs",
                f"pyweaver {deployer} logs --follow 'deployment == \"{deployment.id}\"'",
            ),
            ("error logs", f"pyweaver {deployer} logs 'level == \"error\"' # deployment {short}"),
        ]
    if deployer == "multi":
        commands.append(
            ("profile", f"pyweaver multi profile --deployment {deployment.id} --duration 10s")
        )
    if deployer == "ray":
        commands.append(("stop", f"pyweaver ray stop {deployment.id}"))
    if deployment.config_path:
        commands.append(("deploy again", f"pyweaver {deployer} deploy {deployment.config_path}"))
    return [{"what": what, "command": command} for what, command in commands]


def _read_config(path: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"# cannot read {path}: {exc}"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _json(data: Any) -> bytes:
    return json.dumps(data, default=str).encode()


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _clock(time_ns: int) -> str:
    return (
        time.strftime("%H:%M:%S", time.localtime(time_ns / 1e9))
        + f".{time_ns // 1_000_000 % 1000:03d}"
    )
