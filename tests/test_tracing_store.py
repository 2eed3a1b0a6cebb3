"""The trace store (bounded, rotated, next to the log) and what reads it: read_spans,
recent_traces, chrome_trace, and ``pyweaver multi traces`` listing and exporting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pyweaver.deployers._registry import DATA_DIR_ENV, Registry
from pyweaver.deployers._spanstore import SpanWriter
from pyweaver.deployers._traces import chrome_trace, read_spans, recent_traces
from pyweaver.deployers.multi._cli import multi

DEPLOYMENT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
T0 = 1_800_000_000_000_000_000


def span(
    trace: int,
    number: int,
    *,
    parent: int = 0,
    start_ms: float = 0,
    duration_ms: float = 1,
    replica: str = "r1",
    status: str = "unset",
    name: str = "",
) -> dict[str, Any]:
    start = T0 + trace * 1_000_000_000 + int(start_ms * 1e6)
    return {
        "name": name or f"app.C.m{number}",
        "trace_id": f"{trace:032x}",
        "span_id": f"{trace * 100 + number:016x}",
        "parent_span_id": f"{trace * 100 + parent:016x}" if parent else "",
        "kind": "server" if not parent else "client",
        "start_ns": start,
        "end_ns": start + int(duration_ms * 1e6),
        "status": status,
        "attributes": {"n": number},
        "resource": {"pyweaver.group": "main", "pyweaver.replica": replica},
    }


def test_the_store_is_bounded_and_read_back_oldest_first(tmp_path: Path) -> None:
    with SpanWriter(tmp_path, max_bytes=4000, backups=2) as writer:
        for trace in range(1, 101):
            writer([span(trace, 1)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["traces.1.jsonl", "traces.2.jsonl", "traces.jsonl"]
    assert all((tmp_path / name).stat().st_size <= 4000 for name in names)
    read = [int(s["trace_id"], 16) for s in read_spans(tmp_path)]
    assert read[-1] == 100
    assert read == sorted(read)
    assert 10 < len(read) < 100  # the oldest were dropped
    assert [s["trace_id"] for s in read_spans(tmp_path, f"{100:032x}")] == [f"{100:032x}"]


def test_no_file_until_a_span_arrives_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    with SpanWriter(tmp_path / "dep") as writer:
        writer([])
    assert not (tmp_path / "dep").exists()
    assert list(read_spans(tmp_path / "dep")) == []
    with SpanWriter(tmp_path / "dep") as writer:
        writer([span(1, 1)])
    with open(tmp_path / "dep" / "traces.jsonl", "a") as file:
        file.write('not json\n[1]\n{"trace_id": "00')
    assert len(list(read_spans(tmp_path / "dep"))) == 1


def test_summaries_filter_by_latency_errors_and_start() -> None:
    spans = [
        span(1, 1, duration_ms=5),
        span(1, 2, parent=1, start_ms=1, duration_ms=2, replica="r2"),
        span(2, 1, duration_ms=50, status="error"),
        span(3, 1, duration_ms=20),
    ]
    summaries = recent_traces(spans)
    assert [int(s.trace_id, 16) for s in summaries] == [3, 2, 1]  # newest first
    first = summaries[-1]
    assert (first.spans, first.processes, first.root) == (2, 2, "app.C.m1")
    assert first.duration_ns == 5_000_000
    assert [int(s.trace_id, 16) for s in recent_traces(spans, min_duration_ns=10**7)] == [3, 2]
    assert [int(s.trace_id, 16) for s in recent_traces(spans, errors_only=True)] == [2]
    since = T0 + 2 * 1_000_000_000
    assert [int(s.trace_id, 16) for s in recent_traces(spans, since_ns=since)] == [3, 2]


def test_chrome_trace_has_a_process_per_replica_and_a_thread_per_trace() -> None:
    spans = [span(1, 1), span(1, 2, parent=1, replica="r2"), span(2, 1)]
    events = chrome_trace(spans)["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == 3
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(names.values()) == ["main r1", "main r2"]
    threads = {(e["pid"], e["tid"]) for e in complete}
    assert len(threads) == 3  # trace 1 in two processes, trace 2 on its own thread
    assert all(e["ts"] > 0 and e["dur"] == 1000.0 for e in complete)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    directory = Registry().logs_dir(DEPLOYMENT)
    with SpanWriter(directory) as writer:
        writer([span(1, 1, duration_ms=5), span(1, 2, parent=1, replica="r2")])
        writer([span(2, 1, duration_ms=50, status="error", name="slow")])
    return tmp_path


def traces(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(multi, ["traces", *args])
    return result.exit_code, result.output


def test_traces_lists_newest_first(recorded: Path) -> None:
    code, output = traces()
    assert code == 0, output
    lines = output.splitlines()
    assert lines[1].split("\t") == [
        "DEPLOYMENT", "TRACE ID", "ROOT", "START", "DURATION", "SPANS", "PROCS", "ERROR",
    ]  # fmt: skip
    slow, fast = (line.split("\t") for line in lines[2:])
    assert slow[0] == DEPLOYMENT[:8] and slow[1] == f"{2:032x}" and slow[2] == "slow"
    assert (slow[4], slow[5], slow[7]) == ("50.000 ms", "1", "error")
    assert (fast[1], fast[5], fast[6], fast[7]) == (f"{1:032x}", "2", "2", "")


def test_traces_filters_and_json(recorded: Path) -> None:
    code, output = traces("--json", "--min-latency", "10ms")
    assert code == 0, output
    assert [t["trace_id"] for t in json.loads(output)] == [f"{2:032x}"]
    code, output = traces("--json", "--errors", "--deployment", "ffff")
    assert json.loads(output) == []
    code, output = traces("--min-latency", "fast")
    assert code != 0 and "10ms" in output


def test_traces_exports_perfetto_and_jsonl(recorded: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    code, output = traces("--trace-id", "0000", "--format", "perfetto", "-o", str(target))
    assert code == 0, output
    events = json.loads(target.read_text())["traceEvents"]
    assert len([e for e in events if e["ph"] == "X"]) == 3
    code, output = traces("--errors", "--format", "jsonl")
    assert code == 0
    assert [json.loads(line)["name"] for line in output.splitlines()] == ["slow"]
