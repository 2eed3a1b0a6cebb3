"""``pyweaver multi traces``: recorded traces, listed and exported (Perfetto, JSON lines)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import click

from pyweaver.deployers._registry import Registry
from pyweaver.deployers._traces import TraceSummary, chrome_trace, read_spans, recent_traces
from pyweaver.deployers.multi._cli_common import Tables, print_json, since_to_ns

__all__ = ["traces"]


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


@click.command()
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
    since_ns = since_to_ns(since, now) if since else 0
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
            print_json([{"deployment": d, **summary.to_json()} for d, summary in found])
            return
        if not found:
            click.echo("No traces recorded (deploy with --trace 1 to record every trace).")
            return
        Tables().print(
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
