"""Smoke test of ``benchmarks/run.py boutique``: every layout deploys, takes a tiny load
and produces well-formed rows. It never looks at how fast anything was."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "run.py"


@pytest.mark.timeout(300)  # three deployments, one of 12 processes, on a busy 2-core box
def test_tiny_boutique_run_produces_rows_for_every_layout(tmp_path: Path) -> None:
    pytest.importorskip(
        "grpc_tools", reason="grpcio-tools is not installed (pip install -e '.[bench]')"
    )
    out = tmp_path / "boutique.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(RUNNER),
            "boutique",
            "--rates",
            "4",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--profile-seconds",
            "0",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the runner stops the deployments it started
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise
    assert process.returncode == 0, stderr[-3000:]
    assert "Highest sustained rate" in stdout
    data: dict[str, Any] = json.loads(out.read_text())
    assert [row["layout"] for row in data["rows"]] == ["colocated", "split", "grpc"]
    for row in data["rows"]:
        assert row["offered"] >= 0 and row["cpu_seconds"] is not None
        assert {"p50_ms", "p99_ms", "cpu_ms_per_task", "errors", "sustained"} <= set(row)
    processes = {row["layout"]: row["processes"] for row in data["rows"]}
    assert processes["colocated"] < processes["split"]
    assert processes["grpc"] == 12  # the launcher, 10 services and the frontend
