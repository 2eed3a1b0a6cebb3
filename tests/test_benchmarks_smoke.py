"""Smoke test of the benchmark harness (benchmarks/run.py): the machinery works and
produces well-formed rows.  It never looks at how fast anything was."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_runner() -> ModuleType:
    name = "pyweaver_benchmarks_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def run_bench(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen([sys.executable, str(BENCHMARKS / "run.py"), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the runner stop the servers it started before it exits.
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
def test_tiny_floor_run_produces_a_well_formed_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_bench(["remote", "--only", "^floor-streams-asyncio$", "--rounds", "1",
                        "--seconds", "0.2", "--quiet-wait", "0", "--json", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "floor-streams-asyncio" in result.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["meta"]["rounds"] == 1
    row = data["rows"]["floor-streams-asyncio"]
    assert row["status"] == "ok", row["errors"]
    for metric in ("p50_us", "p99_us", "calls_per_s", "calls_per_s_64k"):
        stats = row["metrics"][metric]
        assert stats["n"] == 1
        assert math.isfinite(stats["median"]) and stats["median"] > 0
        assert stats["min"] <= stats["median"] <= stats["max"]
    records = [r for r in data["records"] if r["row"] == "floor-streams-asyncio"]
    assert sorted(r["measurement"] for r in records) == ["inflight/16", "inflight/65536", "seq/16"]
    assert all(r["status"] == "ok" and r["foreign_cores"] >= 0 for r in records)
    # The only ratios evaluated are those whose both sides ran.
    assert data["ratios"] == []


@pytest.mark.slow
def test_missing_and_failing_variants_are_reported_not_fatal(tmp_path: Path) -> None:
    run = load_runner()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    ctx = run.Context(rounds=1, seconds=0.2, pin="none", quiet_wait_s=0, log=lambda _msg: None,
                      tmpdir=str(tmp_path))
    absent = run.RemoteVariant("absent", "peer", "no_such_script.py", "asyncio", "absent")
    # benchlib.py exits at once without printing READY: a server that fails to start.
    broken = run.RemoteVariant("broken", "peer", "benchlib.py", "asyncio", "no server")
    run.run_remote(absent, 0, ctx)
    run.run_remote(broken, 0, ctx)
    rows = run.summarize(ctx.records)
    assert rows["absent"]["status"] == "missing"
    assert rows["broken"]["status"] == "failed"
    assert "server exited" in rows["broken"]["errors"][0][1]
    text = run.report(rows, [], [absent, broken],
                      {"rounds": 1, "seconds": 0.2, "pin": "none", "cpus": 2, "python": "3"})
    assert "missing" in text and "failed" in text


def test_summary_and_ratios_from_synthetic_records() -> None:
    run = load_runner()

    def record(row: str, round_no: int, **metrics: float) -> dict[str, Any]:
        return {"suite": "remote", "job": row, "row": row, "round": round_no,
                "measurement": "m", "status": "ok", "metrics": metrics, "foreign_cores": 0.0}

    records = [record("fast", r, calls_per_s=v, p50_us=p) for r, (v, p) in
               enumerate([(400.0, 10.0), (500.0, 20.0), (450.0, 30.0)])]
    records += [record("slow", r, calls_per_s=100.0, p50_us=100.0) for r in range(3)]
    rows = run.summarize(records)
    assert rows["fast"]["metrics"]["calls_per_s"]["median"] == 450.0
    assert rows["fast"]["metrics"]["calls_per_s"]["min"] == 400.0
    targets = [
        run.Target("tput", ("fast", "calls_per_s"), ("slow", "calls_per_s"), ">=", 4.0),
        run.Target("p50", ("fast", "p50_us"), ("slow", "p50_us"), "<=", 0.1),
        run.Target("gone", ("absent", "p50_us"), ("slow", "p50_us"), "<=", 1.0),
    ]
    tput, p50, gone = run.evaluate(targets, rows)
    assert tput["verdict"] == "met" and tput["ratio"] == pytest.approx(4.5)
    assert (tput["per_round_min"], tput["per_round_max"]) == pytest.approx((4.0, 5.0))
    assert p50["verdict"] == "not met" and p50["ratio"] == pytest.approx(0.2)
    assert gone["verdict"] == "n/a"
    order = [run.schedule(["a", "b", "c"], r) for r in range(3)]
    assert order == [["a", "b", "c"], ["a", "c", "b"], ["c", "a", "b"]]


@pytest.mark.slow
def test_deploy_variants_record_three_measurements_and_failures(tmp_path: Path) -> None:
    run = load_runner()
    fake = tmp_path / "fake_component.py"
    fake.write_text(
        "import json\n"
        "print(json.dumps({'measurements': {'seq/16': {'p50_us': 100.0, 'p99_us': 200.0},\n"
        "    'inflight/16': {'calls_per_s': 5000.0}, 'inflight/65536': {'calls_per_s': 900.0}}}))\n"
    )
    ctx = run.Context(rounds=1, seconds=0.2, pin="none", quiet_wait_s=0, log=lambda _msg: None,
                      tmpdir=str(tmp_path))
    good = run.DeployVariant("good", str(fake), "asyncio", "fake component rows")
    bad = run.DeployVariant("bad", "benchlib.py", "asyncio", "prints no JSON")
    run.run_deploy(good, 0, ctx)
    run.run_deploy(bad, 0, ctx)
    rows = run.summarize(ctx.records)
    metrics = {name: stats["median"] for name, stats in rows["good"]["metrics"].items()}
    assert metrics == {"p50_us": 100.0, "p99_us": 200.0, "calls_per_s": 5000.0,
                       "calls_per_s_64k": 900.0}
    assert rows["bad"]["status"] == "failed" and rows["bad"]["failed"] == 3


@pytest.mark.slow
def test_component_benchmark_deploys_and_measures_through_the_stub() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "remote_component.py"), "--backend", "asyncio",
         "--seconds", "0.2", "--measure", "seq/16,inflight/65536,seq/16@raw"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "BENCH_SEQ_CALLS": "200"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    found = data["measurements"]
    assert found["seq/16"]["calls"] > 0 and math.isfinite(found["seq/16"]["p50_us"])
    assert found["inflight/65536"]["calls_per_s"] > 0
    assert found["seq/16@raw"]["calls"] > 0
    assert data["deploy_exit"] == 0


@pytest.mark.slow
def test_the_per_layer_breakdown_runs_against_the_current_call_layers() -> None:
    """breakdown.py drives the real stubs, client, sessions and codec with fakes at the
    edges: it breaks when their signatures move, so it is run here (layers only)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "breakdown.py"), "--no-end-to-end", "--seconds", "0.05"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    layers = data["layers_ns"]
    assert "callee: server session + framing + dispatch" in layers
    assert all(math.isfinite(value) for value in layers.values())
