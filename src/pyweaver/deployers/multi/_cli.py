"""``pyweaver multi ...``: deploy an app as many processes on this machine, and look at
the deployments that run.

``deploy`` runs in the foreground: it prints the app's logs, and stops every process
it started on Ctrl-C or SIGTERM, or when main returns (exiting with main's status).
``status``, ``logs``, ``metrics``, ``traces`` and ``purge`` find deployments through the per-user
registry (``$PYWEAVER_DATA_DIR``, else the platform's user data dir). Each of them
takes ``--json``; piped, ``status`` prints whole values, one row per line.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import attrs
import click

from pyweaver._errors import PyWeaverError
from pyweaver._net import format_address
from pyweaver.contract._config import TelemetryConfig
from pyweaver.contract._logentry import LogEntry, format_json, format_pretty
from pyweaver.deployers._exposition import openmetrics_text, prometheus_text
from pyweaver.deployers._logstore import LogQuery, LogStore, LogWriter
from pyweaver.deployers._logstore._query import fields_help
from pyweaver.deployers._otlp import OtlpExport, otlp_traces_endpoint, sampler_ratio_from_env
from pyweaver.deployers._registry import Deployment, Registry, pid_alive
from pyweaver.deployers._spanstore import SpanWriter
from pyweaver.deployers._traces import TraceSummary, chrome_trace, read_spans, recent_traces
from pyweaver.deployers.multi._deployer import DeploymentFailed, MultiDeployer
from pyweaver.deployers.multi._status import (
    METRICS,
    REPLICA_METRICS,
    STATUS,
    fetch_all,
    serve_status,
    status_json,
)
from pyweaver.deployers.multi._telemetry import fan_out, scrape_app
from pyweaver.envelope import Child, ProcessChild

__all__ = ["multi"]


@click.group()
def multi() -> None:
    """Run the app as many processes on this machine."""


# -- deploy -------------------------------------------------------------------------------


class _Console:
    """Writes every log entry to the deployment's log store and to the terminal."""

    def __init__(self, writer: LogWriter, fmt: Literal["pretty", "json"], color: bool) -> None:
        self.writer = writer
        self.fmt = fmt
        self.color = color

    def __call__(self, entries: Sequence[LogEntry]) -> None:
        self.writer.write(entries)
        for entry in entries:
            text = (
                format_json(entry) if self.fmt == "json" else format_pretty(entry, color=self.color)
            )
            click.echo(text, err=False)


def _sample_ratio(
    trace: float | None, telemetry: TelemetryConfig, environ: Mapping[str, str]
) -> float:
    """The fraction of root traces recorded: ``--trace``, else ``[telemetry]``'s
    ``sample_ratio``, else ``OTEL_TRACES_SAMPLER``/``_ARG``, else 1 when
    ``sample_rate`` is given, else 0 (tracing off)."""
    if trace is not None:
        return trace
    if telemetry.sample_ratio is not None:
        return telemetry.sample_ratio
    from_env = sampler_ratio_from_env(environ)
    if from_env is not None:
        return from_env
    return telemetry.effective_ratio()


async def _deploy(
    path: Path, config_file: str, fmt: Literal["pretty", "json"], trace: float | None = None
) -> int:
    from pyweaver.contract._appfacts import check_deployment
    from pyweaver.contract._config import load_config

    # Every config error is found here, before anything starts: the app is imported in
    # a child process and weaver.toml checked against it (as `pyweaver check` does).
    try:
        config = load_config(str(path))
        argv = config.app_argv()
        ratio = _sample_ratio(trace, config.telemetry, os.environ)
        checked = await anyio.to_thread.run_sync(check_deployment, config)
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    # The weavelets read sample_rate from the config they are given; the ratio
    # travels as the deployer's trace_sample_ratio (0: tracing off).
    config = attrs.evolve(config, telemetry=attrs.evolve(config.telemetry, sample_ratio=ratio))
    otlp_endpoint = otlp_traces_endpoint(config.telemetry.otlp_endpoint, os.environ)
    if otlp_endpoint and ratio == 0:
        click.echo(
            f"warning: OTLP export to {otlp_endpoint} is set up but tracing is off: "
            "give --trace, [telemetry] sample_ratio or sample_rate",
            err=True,
        )
    metrics_socket = None
    if config.telemetry.metrics_address:
        from pyweaver._net import bind_socket

        try:
            metrics_socket = bind_socket(config.telemetry.metrics_address, what="metrics")
        except OSError as exc:
            raise click.ClickException(f"[telemetry] metrics_address: {exc.strerror}") from exc
    base = path.parent
    env = {**os.environ, **config.env_vars()}
    env.pop("PYWEAVER_CONFIG", None)

    def child(group: str, run_main: bool) -> Child:
        return ProcessChild(argv, env=env, cwd=str(base))

    registry = Registry()
    socket_dir = Path(tempfile.mkdtemp(prefix=f"{_RUN_DIR_PREFIX}{os.getpid()}-"))
    deployer: MultiDeployer | None = None
    otlp: OtlpExport | None = None
    try:
        deployer = MultiDeployer(
            config,
            child_factory=child,
            socket_dir=socket_dir,
            sys_path=[str(base)],
            trace_sample_ratio=ratio,
            components=list(checked.facts.components),
            edges=checked.facts.edges,
        )
        store = LogStore(registry.logs_root)
        registry.logs_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if otlp_endpoint:
            try:
                otlp = OtlpExport(
                    otlp_endpoint, service_name=os.environ.get("OTEL_SERVICE_NAME", "")
                )
            except PyWeaverError as exc:
                raise click.ClickException(str(exc)) from exc
        with (
            store.writer(deployer.deployment_id) as writer,
            SpanWriter(registry.logs_dir(deployer.deployment_id)) as spans,
        ):
            deployer.span_sink = fan_out(spans, otlp)
            deployer.log_sink = _Console(writer, fmt, color=sys.stdout.isatty())
            lines = [
                f"app        : {config.name}",
                f"deployment : {deployer.deployment_id}",
                f"tracing    : {_tracing_text(ratio, config.telemetry.sample_rate)}",
            ]
            if otlp_endpoint:
                lines.append(f"otlp       : {otlp_endpoint}")
            if metrics_socket is not None:
                host, port = metrics_socket.getsockname()[:2]
                lines.append(f"metrics    : http://{format_address(host, port)}/metrics")
            width = max(54, *(len(line) + 2 for line in lines))
            click.echo(
                "\n".join(
                    [
                        f"╭{'─' * width}╮",
                        *(f"│ {line:<{width - 1}}│" for line in lines),
                        f"╰{'─' * width}╯",
                    ]
                ),
                err=True,
            )
            return await _run_deployment(deployer, registry, path, metrics_socket)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        if metrics_socket is not None:
            metrics_socket.close()
        if otlp is not None:
            await anyio.to_thread.run_sync(otlp.close)  # flushes queued spans
        if deployer is not None:
            registry.unregister(deployer.deployment_id)


def _tracing_text(ratio: float, rate: float | None) -> str:
    if ratio <= 0:
        return "off (--trace 1 records every trace)"
    text = "every trace" if ratio >= 1 else f"{ratio:g} of traces"
    if rate is not None:
        text += f", at most {rate:g}/s per process"
    return text


async def _run_deployment(
    deployer: MultiDeployer,
    registry: Registry,
    path: Path,
    metrics_socket: socket.socket | None = None,
) -> int:
    status = 0
    stop_signal: list[int] = []
    # The signal receiver outlives the deployment, so a second Ctrl-C while it stops is
    # absorbed. A signal does not cancel the deployment from outside (its processes are
    # stopped in order by leaving the deployer's block); it ends the wait for main.
    async with anyio.create_task_group() as watcher:
        waiting = anyio.CancelScope()

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if not stop_signal:
                        click.echo("pyweaver multi: stopping...", err=True)
                    stop_signal.append(signum)
                    waiting.cancel()

        watcher.start_soon(on_signals)
        if metrics_socket is not None:
            from pyweaver._net import serve_asgi_socket

            watcher.start_soon(serve_asgi_socket, metrics_socket, scrape_app(deployer.metrics))
        async with (
            deployer,
            serve_status(
                f"unix://{deployer.socket_dir / 'status.sock'}",
                deployment_id=deployer.deployment_id,
                status=deployer.status,
                metrics=deployer.metrics,
                replica_metrics=partial(deployer.metrics, per_replica=True),
            ) as status_address,
        ):
            registry.register(
                Deployment(
                    id=deployer.deployment_id,
                    app=deployer.config.name,
                    deployer="multi",
                    pid=os.getpid(),
                    started=deployer.started,
                    status_address=status_address,
                    config_path=str(path),
                )
            )
            with waiting:
                try:
                    await deployer.start_main()
                    status = await deployer.wait()
                except DeploymentFailed as exc:
                    click.echo(f"pyweaver multi: {exc}", err=True)
                    status = 1
        watcher.cancel_scope.cancel()
    if stop_signal:
        click.echo("pyweaver multi: stopped", err=True)
        return 128 + stop_signal[0]
    if status < 0:  # main was killed by a signal
        return 128 - status
    return status


@multi.command("deploy")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json"]),
    default="pretty",
    help="How to print log entries.",
)
@click.option(
    "--trace",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="RATIO",
    help="Record this fraction of new traces (0 to 1; 1: every HTTP request and every "
    "call under it), overriding [telemetry] sample_ratio. A trace is sampled where it "
    "starts and recorded whole, across processes. Default: [telemetry], else "
    "OTEL_TRACES_SAMPLER, else off. See `pyweaver multi traces`.",
)
def deploy(config: str, fmt: Literal["pretty", "json"], trace: float | None) -> None:
    """Deploy the app of CONFIG (a weaver.toml) as many processes, in the foreground.

    Ctrl-C (or SIGTERM) stops every process; when main returns, the deployment stops
    and this command exits with main's status.
    """
    sys.exit(anyio.run(_deploy, Path(config).resolve(), config, fmt, trace))


# -- status, metrics ------------------------------------------------------------------------

_JSON_HELP = "Print JSON instead of a table, for programs."


def _fetch_all(method: bytes) -> list[tuple[Deployment, Any]]:
    return anyio.run(fetch_all, Registry(), method)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _age(started: float) -> str:
    seconds = int(time.time() - started)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


class _Tables:
    """Prints titled tables: on a terminal boxed, fitted to its width, long values
    wrapped; otherwise (piped to grep, a file, another program) one line per row,
    columns separated by tabs, every value whole, so nothing is ever cut."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self.piped = not self.console.is_terminal
        self.first = True

    def print(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if self.piped:
            lines = [title, "\t".join(columns)]
            lines.extend("\t".join(cell.replace("\n", ",") for cell in row) for row in rows)
            click.echo("\n".join(lines if self.first else ["", *lines]))
            self.first = False
            return
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")  # wrap a long value, never cut it
        for row in rows:
            table.add_row(*row)
        self.console.print(table)


def _health_text(replica: dict[str, Any]) -> str:
    health = replica.get("health") or {}
    status = replica.get("status") or ("healthy" if health.get("healthy") else "-")
    if status == "failed":
        return f"failed: {', '.join(health.get('failed') or ())}"
    if status == "starting" and health.get("starting"):
        return f"starting (init: {', '.join(health['starting'])})"
    return str(status)


@multi.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def status(as_json: bool) -> None:
    """Show the running deployments: components, replicas, pids, health, listeners."""
    results = _fetch_all(STATUS)
    if as_json:
        _print_json(status_json(results))
        return
    if not results:
        click.echo("No multi deployments are running.")
        return
    tables = _Tables()
    tables.print(
        "DEPLOYMENTS",
        ("APP", "DEPLOYMENT", "AGE", "PID"),
        [(d.app, d.id, _age(d.started), str(d.pid)) for d, _ in results],
    )
    components: list[tuple[str, ...]] = []
    listeners: list[tuple[str, ...]] = []
    for deployment, report in results:
        # On a terminal the id is shortened to fit; piped, it stays whole.
        shown_id = deployment.id if tables.piped else deployment.id[:8]
        if isinstance(report, Exception):
            components.append(
                (deployment.app, shown_id, "?", "?", "?", "?", "unreachable", str(report))
            )
            continue
        for group in report["groups"]:
            components.extend(
                (
                    deployment.app,
                    shown_id,
                    group["name"],
                    "\n".join(group["components"]),
                    f"#{replica['slot'].rsplit('#', 1)[-1]} {replica['replica']}",
                    str(replica["pid"] or "-"),
                    replica["state"],
                    _health_text(replica),
                )
                for replica in group["replicas"]
            )
        listeners.extend(
            (
                deployment.app,
                shown_id,
                listener["name"],
                listener["proxy"],
                str(len(listener["backends"])),
            )
            for listener in report["listeners"]
        )
    tables.print(
        "COMPONENTS",
        ("APP", "DEPLOYMENT", "GROUP", "COMPONENTS", "REPLICA", "PID", "STATE", "HEALTH"),
        components,
    )
    tables.print("LISTENERS", ("APP", "DEPLOYMENT", "LISTENER", "ADDRESS", "BACKENDS"), listeners)


@multi.command()
@click.argument("regex", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print the samples as JSON.")
@click.option("--openmetrics", is_flag=True, help="Print OpenMetrics text.")
@click.option(
    "--per-replica",
    is_flag=True,
    help="Keep each replica's samples apart (labels serviceweaver_group and "
    "serviceweaver_node, the replica id) instead of merging them.",
)
def metrics(regex: str, as_json: bool, openmetrics: bool, per_replica: bool) -> None:
    """Print the metrics of the running deployments (Prometheus text), merged across
    replicas unless --per-replica; REGEX (a Python regular expression, searched
    anywhere in the name) keeps only the metrics whose name it matches, e.g.
    'serviceweaver_method' or '^process_'.

    Every metric carries serviceweaver_app and serviceweaver_version (the deployment);
    process_* metrics (CPU seconds, memory, open fds, start time) are per replica
    always. Set [telemetry] metrics_address in weaver.toml for a scrape address.
    """
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise click.ClickException(f"bad REGEX {regex!r}: {exc}") from exc
    samples: list[dict[str, Any]] = []
    for deployment, result in _fetch_all(REPLICA_METRICS if per_replica else METRICS):
        if isinstance(result, Exception):
            click.echo(f"# deployment {deployment.id}: {result}", err=True)
            continue
        samples.extend(s for s in result if pattern.search(s["name"]))
    if as_json:
        _print_json(samples)
    elif openmetrics:
        click.echo(openmetrics_text(samples), nl=False)
    else:
        click.echo(prometheus_text(samples), nl=False)


@multi.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
def dashboard(host: str, port: int) -> None:
    """Serve a web page showing the running deployments until Ctrl-C: components,
    replicas, health, CPU and memory, methods, the call graph, traces, error logs."""
    from pyweaver.deployers.multi._dashboard import serve_dashboard

    anyio.run(serve_dashboard, "multi", host, port)


# -- logs, purge ----------------------------------------------------------------------------


_LOGS_HELP = f"""Print the logs of multi deployments (running or not) matching QUERY, a CEL
expression (Common Expression Language, as Service Weaver's `weaver multi logs`), in time
order across deployments and replicas.

Each line shows the level and time, the deployment and replica (short ids), the
component, file:line, the message and the attributes.

\b
Fields:
{fields_help()}

\b
Examples:
  pyweaver multi logs 'level == "error" && component.contains("Cart")'
  pyweaver multi logs 'attrs["user"] == "ann"'       # entries with user=ann
  pyweaver multi logs 'severity >= 30'               # warnings and errors
  pyweaver multi logs 'msg.matches("^retry [0-9]+")' # RE2, unanchored
  pyweaver multi logs 'time > timestamp("2026-11-30T00:00:00Z")'
  pyweaver multi logs 'time > now - duration("5m")'
  pyweaver multi logs --follow 'stream == "stderr"'  # captured stderr, from now on
  pyweaver multi logs --since 1h --follow            # the last hour, then follow

\b
Operators: && || ! == != < <= > >= in, s.contains(t), s.startsWith(t),
s.endsWith(t), s.matches(re), has(attrs.k), size(s), timestamp(...), duration(...)
and the rest of CEL. An entry without an attribute the query reads (attrs["k"]) does
not match, whatever the comparison.
"""

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _since_ns(text: str, now: float) -> int:
    """``--since``: a duration before ``now`` (``90s``, ``5m``, ``1h30m``, ``2d``) or an
    ISO 8601 / RFC 3339 timestamp (local time when it has no zone)."""
    if re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h|d))+", text):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit]
            for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ms|s|m|h|d)", text)
        )
        return int((now - seconds) * 1e9)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (90s, 5m, 1h30m, 2d) nor a timestamp "
            "(2026-11-30T08:00:00Z, or local time without a zone)",
            param_hint="'--since'",
        ) from None
    return int(moment.astimezone().timestamp() * 1e9)


@multi.command(help=_LOGS_HELP)
@click.argument("query", required=False, default="")
@click.option(
    "--follow", "-f", is_flag=True, help="Print new entries as they are written, from now on."
)
@click.option(
    "--since",
    metavar="DURATION|TIMESTAMP",
    help="Only entries made since then (5m, 1h30m, 2d, or 2026-11-30T08:00:00Z); with "
    "--follow, those first, then new entries.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json"]),
    default="pretty",
    help="How to print entries.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def logs(query: str, follow: bool, since: str | None, fmt: str, as_json: bool) -> None:
    if as_json:
        fmt = "json"
    since_ns = _since_ns(since, time.time()) if since else None
    try:
        parsed = LogQuery.parse(query) if query.strip() else None
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    store = LogStore(Registry().logs_root)
    color = sys.stdout.isatty()

    def show(entry: LogEntry) -> None:
        if fmt == "json":
            click.echo(format_json(entry))
        else:
            click.echo(format_pretty(entry, color=color, deployment=True))

    if not follow:
        for entry in store.read(parsed, since_ns=since_ns):
            show(entry)
        return

    async def tail() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        stop.set()
                        return

            tasks.start_soon(on_signals)
            entries = store.follow(
                parsed, stop=stop, from_start=since_ns is not None, since_ns=since_ns
            )
            async for entry in entries:
                show(entry)
            tasks.cancel_scope.cancel()

    anyio.run(tail)


# -- traces -------------------------------------------------------------------------------

_LATENCY_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _latency_ns(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s)", text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration such as 10ms, 1.5s or 250us", param_hint="'--min-latency'"
        )
    return int(float(match.group(1)) * _LATENCY_UNITS[match.group(2)])


def _trace_dirs(registry: Registry, deployment_id: str | None) -> list[tuple[str, Path]]:
    """The deployments (running or not) with a logs directory, oldest first."""
    root = registry.logs_root
    if not root.is_dir():
        return []
    found = [
        (path.name, path)
        for path in root.iterdir()
        if path.is_dir() and (deployment_id is None or path.name.startswith(deployment_id))
    ]
    found.sort(key=lambda item: item[1].stat().st_mtime)
    return found


def _millis(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms" if ns < 10_000_000_000 else f"{ns / 1e9:.1f} s"


@multi.command()
@click.option(
    "--deployment",
    "deployment_id",
    help="Only this deployment (an id or its prefix); default: every deployment on record.",
)
@click.option(
    "--since",
    metavar="DURATION|TIMESTAMP",
    help="Only traces started since then (5m, 1h30m, 2d, or 2026-11-30T08:00:00Z).",
)
@click.option(
    "--min-latency",
    metavar="DURATION",
    help="Only traces lasting at least this long (10ms, 1.5s, 250us).",
)
@click.option("--errors", is_flag=True, help="Only traces with a span that failed.")
@click.option("--trace-id", help="Only this trace (its 32 hex digits, or a prefix).")
@click.option(
    "--limit", default=50, show_default=True, help="At most this many traces, newest first."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "perfetto", "jsonl"]),
    default="table",
    show_default=True,
    help="table: list the traces; perfetto: write their spans as Chrome trace JSON "
    "(open it at https://ui.perfetto.dev); jsonl: their spans, one JSON object a line.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    help="Where --format perfetto|jsonl writes ('-': stdout) [default: perfetto: "
    "traces-DEPLOYMENT.perfetto.json; jsonl: stdout].",
)
@click.option("--json", "as_json", is_flag=True, help="List the traces as JSON.")
def traces(
    *,
    deployment_id: str | None,
    since: str | None,
    min_latency: str | None,
    errors: bool,
    trace_id: str | None,
    limit: int,
    fmt: str,
    output: str | None,
    as_json: bool,
) -> None:
    """List the recorded traces of multi deployments (running or not), newest first, or
    export their spans for Perfetto.

    Traces are recorded when the deployment runs with tracing on (`deploy --trace 1`,
    or [telemetry] sample_ratio / sample_rate in weaver.toml); each deployment keeps
    its spans in a bounded, rotated store next to its logs (the oldest are dropped).
    The table shows each trace's id, its root span, start, duration, span count, how
    many processes recorded its spans, and whether any span failed.

    \b
    Examples:
      pyweaver multi traces --min-latency 10ms --errors
      pyweaver multi traces --since 5m --format perfetto -o slow.json
      pyweaver multi traces --trace-id 4bf92f35 --format jsonl
    """
    now = time.time()
    since_ns = _since_ns(since, now) if since else 0
    min_ns = _latency_ns(min_latency) if min_latency else 0
    registry = Registry()
    found: list[tuple[str, TraceSummary]] = []
    spans_of: dict[str, Path] = {}
    for deployment, directory in _trace_dirs(registry, deployment_id):
        summaries = recent_traces(
            read_spans(directory),
            limit=limit if not trace_id else 1_000_000,
            min_duration_ns=min_ns,
            errors_only=errors,
            since_ns=since_ns,
        )
        for summary in summaries:
            if trace_id and not summary.trace_id.startswith(trace_id.lower()):
                continue
            found.append((deployment, summary))
            spans_of[summary.trace_id] = directory
    found.sort(key=lambda item: (item[1].start_ns, item[1].trace_id), reverse=True)
    found = found[:limit]
    if fmt == "table":
        if as_json:
            _print_json([{"deployment": d, **summary.to_json()} for d, summary in found])
            return
        if not found:
            click.echo("No traces recorded (deploy with --trace 1 to record every trace).")
            return
        _Tables().print(
            "TRACES",
            ("DEPLOYMENT", "TRACE ID", "ROOT", "START", "DURATION", "SPANS", "PROCS", "ERROR"),
            [
                (
                    deployment[:8],
                    summary.trace_id,
                    summary.root,
                    datetime.fromtimestamp(summary.start_ns / 1e9).strftime("%H:%M:%S.%f")[:-3],
                    _millis(summary.duration_ns),
                    str(summary.spans),
                    str(summary.processes),
                    "error" if summary.error else "",
                )
                for deployment, summary in found
            ],
        )
        return
    wanted = {summary.trace_id for _, summary in found}
    spans = [
        span
        for directory in dict.fromkeys(spans_of[t] for t in wanted)
        for span in read_spans(directory)
        if span.get("trace_id") in wanted
    ]
    if fmt == "jsonl":
        text = "".join(json.dumps(span, separators=(",", ":")) + "\n" for span in spans)
        target = output or "-"
    else:
        text = json.dumps(chrome_trace(spans), separators=(",", ":"))
        deployments = sorted({d[:8] for d, _ in found}) or ["none"]
        target = output or f"traces-{'-'.join(deployments)}.perfetto.json"
    if target == "-":
        click.echo(text, nl=False)
        return
    Path(target).write_text(text)
    processes = len({str(s.get("resource", {}).get("pyweaver.replica", "")) for s in spans})
    click.echo(
        f"wrote {target} ({len(wanted)} traces, {len(spans)} spans from {processes} "
        "processes)" + ("; open it at https://ui.perfetto.dev" if fmt == "perfetto" else ""),
        err=True,
    )


# -- profile --------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 10s, 1m or 500ms")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


@multi.command()
@click.argument("group", required=False)
@click.option(
    "--duration",
    default="10s",
    show_default=True,
    help="How long to sample (10s, 1m; whole seconds, rounded up).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the profile [default: profile-DEPLOYMENT-GROUP.speedscope.json].",
)
@click.option(
    "--deployment",
    "deployment_id",
    help="The deployment (an id or its prefix); needed when several are running.",
)
@click.option("--rate", default=100, show_default=True, help="Samples per second per replica.")
@click.option("--idle", is_flag=True, help="Also record threads that are idle (waiting).")
def profile(
    group: str | None,
    *,
    duration: str,
    output: str | None,
    deployment_id: str | None,
    rate: int,
    idle: bool,
) -> None:
    """Sample every replica of GROUP (a colocation group, or a component in it; default:
    every replica of the deployment) at once with py-spy, and write one speedscope
    profile with a profile per replica (open it at https://www.speedscope.app).

    py-spy reads the processes from outside: it needs `pip install 'pyweaver[profile]'`
    and the right to trace them (root, or kernel.yama.ptrace_scope=0).
    """
    from pyweaver.deployers.multi._profile import profile_targets, targets_from_status

    seconds = _seconds(duration)
    results = _fetch_all(STATUS)
    if deployment_id is not None:
        results = [(d, r) for d, r in results if d.id.startswith(deployment_id)]
    if not results:
        raise click.ClickException(
            "no running multi deployment" + (f" matches {deployment_id!r}" if deployment_id else "")
        )
    if len(results) > 1:
        ids = ", ".join(d.id[:8] for d, _ in results)
        raise click.ClickException(
            f"{len(results)} deployments are running ({ids}): choose one with --deployment"
        )
    deployment, report = results[0]
    if isinstance(report, Exception):
        raise click.ClickException(f"deployment {deployment.id} does not answer: {report}")
    try:
        targets = targets_from_status(report, group)
        click.echo(
            f"profiling {len(targets)} replica(s) of {deployment.app} "
            f"{deployment.id[:8]} for {max(1, math.ceil(seconds))} s...",
            err=True,
        )
        merged = anyio.run(lambda: profile_targets(targets, seconds, rate=rate, idle=idle))
    except PyWeaverError as exc:
        raise click.ClickException(str(exc)) from exc
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", group or "all")
    path = Path(output or f"profile-{deployment.id[:8]}-{name}.speedscope.json")
    path.write_text(json.dumps(merged, separators=(",", ":")))
    samples = sum(len(p.get("samples", [])) for p in merged["profiles"])
    click.echo(
        f"wrote {path} ({len(merged['profiles'])} profiles, {samples} samples); "
        "open it at https://www.speedscope.app"
    )


# A deployment's run directory (its Unix sockets) is ``<tmp>/pyweaver-<deployer
# pid>-<random>``; a deployer that was SIGKILLed leaves it behind.
_RUN_DIR_PREFIX = "pyweaver-"
_RUN_DIR_NAME = re.compile(r"pyweaver-(\d+)-[A-Za-z0-9_]+")


def purge_run_dirs(temp_dir: Path | None = None) -> list[Path]:
    """Remove the run directories left by deployers that are gone (this user's, under
    the temp dir, named after a deployer pid that is no longer alive); those removed."""
    removed = []
    root = Path(temp_dir or tempfile.gettempdir())
    for run_dir in sorted(root.glob(_RUN_DIR_PREFIX + "*")):
        name = _RUN_DIR_NAME.fullmatch(run_dir.name)
        if name is None or pid_alive(int(name.group(1))):
            continue
        try:
            if run_dir.is_symlink() or not run_dir.is_dir() or run_dir.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


@multi.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def purge(as_json: bool) -> None:
    """Delete the logs and registry entries of multi deployments that are not running,
    and the run directories (Unix sockets) that killed deployers left."""
    result = Registry().purge()
    run_dirs = purge_run_dirs()
    if as_json:
        _print_json(
            {
                "removed": list(result.removed),
                "running": [deployment.to_json() for deployment in result.running],
                "run_dirs": [str(path) for path in run_dirs],
            }
        )
        return
    for deployment_id in result.removed:
        click.echo(f"removed {deployment_id}")
    for path in run_dirs:
        click.echo(f"removed {path}")
    for deployment in result.running:
        click.echo(
            f"kept {deployment.id} ({deployment.app}, pid {deployment.pid}): still running; "
            "stop it first",
            err=True,
        )
    if not result.removed and not result.running and not run_dirs:
        click.echo("nothing to purge")
