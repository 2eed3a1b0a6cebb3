"""Reading a deployment's recorded traces: recent traces, and one trace for Perfetto.

The API is three functions, so that the storage behind them can change without their
callers (the dashboard; later a ``traces`` command) noticing:

* :func:`read_spans` — the only function that knows where spans are stored: the
  deployer's trace store (:mod:`pyweaver.deployers._spanstore`), ``traces.jsonl`` and
  its rotated predecessors ``traces.<n>.jsonl`` in ``<logs dir>/<deployment id>/``,
  one span per line (a span dict as ``pyweaver._runtime._tracing_sdk.span_to_dict``
  writes it: ``name, trace_id, span_id, parent_span_id, kind, start_ns, end_ns,
  status, attributes, resource``...);
* :func:`recent_traces` — one :class:`TraceSummary` per trace, newest first, filtered
  by minimum duration and errors;
* :func:`chrome_trace` — a trace's spans as Chrome trace-event JSON, which
  https://ui.perfetto.dev (and ``chrome://tracing``) opens: one track ("process") per
  weavelet replica, one thread per trace in it, one complete event (``"ph": "X"``)
  per span, microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from pyweaver.deployers._spanstore import read_file, span_files

__all__ = ["TraceSummary", "chrome_trace", "read_spans", "recent_traces"]


def read_spans(deployment_logs_dir: Path, trace_id: str = "") -> Iterator[dict[str, Any]]:
    """The recorded spans of one deployment (all of them, or only ``trace_id``'s), in
    the order they were recorded (oldest file first); nothing when it recorded none.
    A torn last line (a writer mid-append) is skipped."""
    for path in span_files(deployment_logs_dir):
        yield from read_file(path, trace_id)


@attrs.frozen(kw_only=True)
class TraceSummary:
    """One trace, for a list of traces.

    Attributes:
        trace_id: 32 hex digits.
        root: the name of its root span (the earliest span if the root was not recorded).
        start_ns: its first span's start, ns since the epoch.
        duration_ns: from its first span's start to its last span's end.
        error: whether any of its spans ended with status error.
        spans: how many spans it has.
        processes: how many weavelet replicas recorded them.
    """

    trace_id: str
    root: str
    start_ns: int
    duration_ns: int
    error: bool
    spans: int
    processes: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _process(span: dict[str, Any]) -> str:
    resource = span.get("resource") or {}
    group = resource.get("pyweaver.group", "")
    replica = resource.get("pyweaver.replica", "")
    return f"{group} {replica}".strip() or str(resource.get("service.name", "app"))


def recent_traces(
    spans: Iterable[dict[str, Any]],
    *,
    limit: int = 100,
    min_duration_ns: int = 0,
    errors_only: bool = False,
    since_ns: int = 0,
) -> list[TraceSummary]:
    """At most ``limit`` traces of ``spans`` (e.g. :func:`read_spans`), newest first,
    lasting at least ``min_duration_ns``, started at ``since_ns`` or later and, with
    ``errors_only``, having an error."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(str(span.get("trace_id", "")), []).append(span)
    summaries = []
    for trace_id, members in by_trace.items():
        start = min(int(s.get("start_ns", 0)) for s in members)
        end = max(int(s.get("end_ns", 0)) for s in members)
        roots = [s for s in members if not s.get("parent_span_id")]
        root = min(roots or members, key=lambda s: int(s.get("start_ns", 0)))
        summary = TraceSummary(
            trace_id=trace_id,
            root=str(root.get("name", "")),
            start_ns=start,
            duration_ns=max(end - start, 0),
            error=any(s.get("status") == "error" for s in members),
            spans=len(members),
            processes=len({_process(s) for s in members}),
        )
        if (
            summary.duration_ns >= min_duration_ns
            and summary.start_ns >= since_ns
            and (summary.error or not errors_only)
        ):
            summaries.append(summary)
    summaries.sort(key=lambda s: (s.start_ns, s.trace_id), reverse=True)
    return summaries[:limit]


def chrome_trace(spans: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``spans`` (usually one trace's) as a Chrome trace-event JSON object:
    ``{"traceEvents": [...], "displayTimeUnit": "ms"}``. Each replica is a process
    (named by its group and replica id); each trace a thread in it (thread 1 for the
    first trace, and so on, named by the trace id), so that unrelated traces do not
    overlap; each span a complete event whose ``args`` carry its ids, kind, status and
    attributes."""
    processes: dict[str, int] = {}
    threads: dict[str, int] = {}
    named_threads: set[tuple[int, int]] = set()
    events: list[dict[str, Any]] = []
    for span in sorted(spans, key=lambda s: int(s.get("start_ns", 0))):
        name = _process(span)
        pid = processes.get(name)
        if pid is None:
            pid = processes[name] = len(processes) + 1
            events.append(
                {"ph": "M", "name": "process_name", "pid": pid, "tid": 1, "args": {"name": name}}
            )
        trace_id = str(span.get("trace_id", ""))
        tid = threads.setdefault(trace_id, len(threads) + 1)
        if (pid, tid) not in named_threads:
            named_threads.add((pid, tid))
            events.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": tid,
                    "args": {"name": f"trace {trace_id[:8]}"},
                }
            )
        start = int(span.get("start_ns", 0))
        end = int(span.get("end_ns", 0))
        events.append(
            {
                "ph": "X",
                "name": str(span.get("name", "")),
                "cat": str(span.get("kind", "internal")),
                "pid": pid,
                "tid": tid,
                "ts": start / 1000,
                "dur": max(end - start, 0) / 1000,
                "args": {
                    "trace_id": span.get("trace_id", ""),
                    "span_id": span.get("span_id", ""),
                    "parent_span_id": span.get("parent_span_id", ""),
                    "status": span.get("status", ""),
                    "status_message": span.get("status_message", ""),
                    **(span.get("attributes") or {}),
                },
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ms"}
