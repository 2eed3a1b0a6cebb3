"""Telemetry of a real ``pyweaver multi deploy`` of the hello example, configured only
by weaver.toml's ``[telemetry]``: every request traced across processes and listed and
exported by ``pyweaver multi traces``; metrics per replica with ``process_*`` metrics;
the scrape address serving ``/metrics``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._status import STATUS, fetch
from tests.multi.test_deploy_listeners import HELLO, wait_for_listener

pytestmark = pytest.mark.slow

REQUESTS = 12


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path, Path]]:
    data_dir = tmp_path / "data"
    config = tmp_path / "weaver.toml"
    config.write_text(
        "[serviceweaver]\n"
        f'binary = "{HELLO}"\n'
        "[multi]\n"
        'listeners.hello = {address = "127.0.0.1:0"}\n'
        "[telemetry]\n"
        "sample_ratio = 1.0\n"
        'metrics_address = "127.0.0.1:0"\n'
    )
    log = tmp_path / "deploy.log"
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyweaver", "multi", "deploy", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield wait_for_listener(data_dir, process), data_dir, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "pyweaver", "multi", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_traces_and_metrics_of_a_deployment(
    deployment: tuple[dict[str, Any], Path, Path], tmp_path: Path
) -> None:
    report, data_dir, log = deployment
    address = report["listeners"][0]["proxy"]
    with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        for i in range(REQUESTS):
            assert client.get("/hello", params={"name": f"n{i}"}).status_code == 200

    # Every request is a trace (sample_ratio = 1), from main and a Reverser replica.
    deadline = time.monotonic() + 15
    traces: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        traces = json.loads(cli(data_dir, "traces", "--json"))
        complete = [t for t in traces if t["root"] == "hello" and t["processes"] >= 2]
        if len(complete) >= REQUESTS:
            break
        time.sleep(0.3)
    assert len(complete) == REQUESTS, traces
    assert all(t["spans"] >= 3 and not t["error"] for t in complete)

    target = tmp_path / "trace.json"
    cli(data_dir, "traces", "--trace-id", complete[0]["trace_id"], "--format", "perfetto",
        "-o", str(target))  # fmt: skip
    events = json.loads(target.read_text())["traceEvents"]
    processes = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert len(processes) == 2
    assert {e["cat"] for e in events if e["ph"] == "X"} >= {"server", "client"}

    # Metrics: per replica on demand, REGEX on names; process_* per weavelet.
    samples = json.loads(cli(data_dir, "metrics", "--json", "--per-replica", "method_count"))
    assert samples and {s["name"] for s in samples} == {"serviceweaver_method_count"}
    reverse = [s for s in samples if s["labels"].get("method") == "reverse"]
    assert sum(s["value"] for s in reverse) == REQUESTS
    assert all(s["labels"]["serviceweaver_node"] for s in reverse)
    merged = json.loads(cli(data_dir, "metrics", "--json", "^process_resident_memory"))
    nodes = {s["labels"]["serviceweaver_node"] for s in merged}
    # The replicas now: the report taken when the listener came up can list fewer than
    # have registered since (a group's replicas start and register one by one).
    (running,) = Registry(data_dir).list("multi")
    report = anyio.run(fetch, running.status_address, running.id, STATUS)
    replicas = sum(len(g["replicas"]) for g in report["groups"])
    assert len(nodes) == replicas >= 2
    assert all(s["value"] > 1_000_000 for s in merged)

    # The scrape address named in weaver.toml serves /metrics (port 0: see the banner).
    match = re.search(r"metrics\s*: (http://\S+/metrics)", log.read_text())
    assert match, log.read_text()
    scraped = httpx.get(match[1], timeout=10)
    assert scraped.status_code == 200
    assert "serviceweaver_http_request_count_total{host=" in scraped.text
    assert "process_cpu_seconds_total{" in scraped.text
    openmetrics = httpx.get(
        match[1], headers={"accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
    )
    assert openmetrics.text.endswith("# EOF\n")
