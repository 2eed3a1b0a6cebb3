"""The dashboard's pages and JSON endpoints, on fake status data, through an in-process
ASGI client (no process, no socket): what each endpoint shows, the methods table's
last-minute and since-start figures, the call graph, traces for Perfetto, and the
``starting`` status of a replica whose components are still in ``init``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyweaver.contract._metrics import METHOD_COUNT, METHOD_ERRORS, METHOD_LATENCY
from pyweaver.deployers._registry import Deployment
from pyweaver.deployers._traces import chrome_trace, read_spans, recent_traces
from pyweaver.deployers.multi import _dashboard
from pyweaver.deployers.multi._dashboard import Dashboard, method_rows, percentile
from pyweaver.deployers.multi._groups import Group, Slot
from pyweaver.deployers.multi._status import REPLICA_METRICS, STATUS
from pyweaver.deployers.multi._telemetry import _still_starting, replica_status

pytestmark = pytest.mark.anyio

DEPLOYMENT_ID = "0b7c1e2a-5d7e-4c4e-9f0a-1234567890ab"
BOUNDS = [100.0, 1000.0, 10000.0]


def method_samples(node: str, calls: int, errors: int, fast: int, slow: int) -> list[Any]:
    labels = {
        "caller": "main",
        "component": "app.Factorer",
        "method": "factors",
        "remote": "true",
        "serviceweaver_group": "main",
        "serviceweaver_node": node,
    }
    return [
        {"name": METHOD_COUNT, "kind": "counter", "help": "", "labels": labels, "value": calls},
        {"name": METHOD_ERRORS, "kind": "counter", "help": "", "labels": labels, "value": errors},
        {
            "name": METHOD_LATENCY,
            "kind": "histogram",
            "help": "",
            "labels": labels,
            "bounds": BOUNDS,
            "counts": [0, fast, slow, 0],
            "sum": fast * 500 + slow * 5000,
            "count": fast + slow,
        },
    ]


def report(starting: list[str]) -> dict[str, Any]:
    return {
        "deployment": DEPLOYMENT_ID,
        "app": "factors",
        "started": time.time() - 100,
        "groups": [
            {
                "name": "main",
                "components": ["main"],
                "activated": ["main"],
                "routed": False,
                "replicas": [
                    {
                        "slot": "main#0",
                        "replica": "0-aaaaaa",
                        "pid": os.getpid(),
                        "state": "ready",
                        "status": "healthy",
                        "starts": 1,
                        "restarts": 0,
                        "last_exit": None,
                        "health": {"healthy": True, "built": [], "failed": {}, "starting": []},
                    }
                ],
            },
            {
                "name": "app.Factorer",
                "components": ["app.Factorer"],
                "activated": ["app.Factorer"],
                "routed": True,
                "replicas": [
                    {
                        "slot": "app.Factorer#0",
                        "replica": "0-bbbbbb",
                        "pid": 0,
                        "state": "ready",
                        "status": "starting" if starting else "healthy",
                        "starts": 3,
                        "restarts": 2,
                        "last_exit": -9,
                        "health": {
                            "healthy": True,
                            "built": [],
                            "failed": {},
                            "starting": starting,
                        },
                    }
                ],
            },
        ],
        "listeners": [{"name": "factors", "proxy": "127.0.0.1:12347", "backends": []}],
    }


class FakeSource:
    """One deployment whose method counts grow by what the test sets."""

    def __init__(self, logs_root: Path) -> None:
        self.logs_root = logs_root
        self.deployment = Deployment(
            id=DEPLOYMENT_ID,
            app="factors",
            deployer="multi",
            pid=os.getpid(),
            started=time.time() - 100,
            config_path="",
        )
        self.samples: list[Any] = []
        self.starting: list[str] = []

    def deployments(self) -> list[Deployment]:
        return [self.deployment]

    async def ask(self, deployment: Deployment, method: bytes) -> Any:
        if method == STATUS:
            return report(self.starting)
        if method == REPLICA_METRICS:
            return self.samples
        return self.samples

    def logs_dir(self, deployment: Deployment) -> Path:
        return self.logs_root / deployment.id


def span(
    trace: str, span_id: str, parent: str, replica: str, start: int, end: int, **extra: Any
) -> Any:
    return {
        "name": extra.pop("name", "app.Factorer.factors"),
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "kind": extra.pop("kind", "server"),
        "start_ns": start,
        "end_ns": end,
        "status": extra.pop("status", "unset"),
        "attributes": {},
        "resource": {"pyweaver.group": "g", "pyweaver.replica": replica},
    }


def write_spans(logs_dir: Path) -> None:
    logs_dir.mkdir(parents=True)
    spans = [
        span("a" * 32, "1" * 16, "", "main-0", 1_000_000, 9_000_000, name="GET /", kind="server"),
        span("a" * 32, "2" * 16, "1" * 16, "main-0", 2_000_000, 8_000_000, kind="client"),
        span("a" * 32, "3" * 16, "2" * 16, "fact-1", 3_000_000, 7_000_000),
        span("b" * 32, "4" * 16, "", "main-0", 10_000_000, 10_500_000, status="error"),
    ]
    text = "".join(json.dumps(s) + "\n" for s in spans) + '{"torn": '
    (logs_dir / "traces.jsonl").write_text(text)


@pytest.fixture
def source(tmp_path: Path) -> FakeSource:
    return FakeSource(tmp_path / "logs")


def client(dashboard: Dashboard) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard), base_url="http://dash.test"
    )


async def test_deployments_lists_each_with_its_health(source: FakeSource) -> None:
    source.starting = ["app.Factorer"]
    async with client(Dashboard(source)) as http:
        (entry,) = (await http.get("/api/deployments")).json()
        page = await http.get("/")
    assert entry["deployment"]["id"] == DEPLOYMENT_ID
    assert (entry["replicas"], entry["healthy"]) == (2, 1)  # one is still starting
    assert page.status_code == 200 and f"/deployment/{DEPLOYMENT_ID}" in page.text


async def test_methods_show_the_last_minute_and_since_start(source: FakeSource) -> None:
    dashboard = Dashboard(source)
    source.samples = method_samples("0-aaaaaa", calls=10, errors=0, fast=10, slow=0)
    await dashboard.sample()
    source.samples = method_samples("0-aaaaaa", calls=30, errors=4, fast=10, slow=20)
    await dashboard.sample()
    async with client(dashboard) as http:
        data = (await http.get(f"/api/deployment/{DEPLOYMENT_ID}")).json()
    (row,) = data["methods"]["by_component"]
    assert (row["component"], row["method"]) == ("app.Factorer", "factors")
    assert (row["minute"]["calls"], row["minute"]["errors"]) == (20, 4)  # the difference
    assert (row["total"]["calls"], row["total"]["errors"]) == (30, 4)
    assert row["minute"]["error_rate"] == pytest.approx(0.2)
    # In the last minute every call was slow (1-10 ms); since start, 10 of 30 were fast.
    assert 1.0 < row["minute"]["p50_ms"] <= 10.0
    assert 0.1 < row["total"]["p50_ms"] <= 10.0
    (replica_row,) = data["methods"]["by_replica"]
    assert replica_row["replica"] == "0-aaaaaa" and replica_row["total"]["calls"] == 30


def test_percentile_interpolates_in_the_bucket() -> None:
    assert percentile(BOUNDS, [0, 0, 0, 0], 0.5) is None
    assert percentile(BOUNDS, [0, 10, 0, 0], 0.5) == pytest.approx(550.0)
    assert percentile(BOUNDS, [10, 0, 0, 0], 1.0) == pytest.approx(100.0)
    assert percentile(BOUNDS, [0, 0, 0, 5], 0.99) == pytest.approx(10000.0)  # overflow


def test_method_rows_without_an_earlier_snapshot_use_the_uptime() -> None:
    now = method_samples("n", calls=50, errors=0, fast=50, slow=0)
    (row,) = method_rows(now, None, window=60, uptime=100)
    assert row["minute"]["calls_per_s"] == pytest.approx(0.5)


async def test_graph_is_an_svg_with_an_edge_per_caller(source: FakeSource) -> None:
    source.samples = method_samples("0-aaaaaa", calls=7, errors=0, fast=7, slow=0)
    async with client(Dashboard(source)) as http:
        data = (await http.get(f"/api/deployment/{DEPLOYMENT_ID}")).json()
        svg = await http.get(f"/api/graph/{DEPLOYMENT_ID}.svg")
    (edge,) = data["graph"]["edges"]
    assert (edge["caller"], edge["component"], edge["calls"]) == ("main", "app.Factorer", 7)
    nodes = {n["name"]: n for n in data["graph"]["nodes"]}
    assert nodes["main"]["x"] < nodes["app.Factorer"]["x"]  # callers left of callees
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.startswith("<svg") and ">app.Factorer<" in svg.text


async def test_traces_list_and_open_in_perfetto(source: FakeSource) -> None:
    write_spans(source.logs_dir(source.deployment))
    async with client(Dashboard(source)) as http:
        data = (await http.get(f"/api/deployment/{DEPLOYMENT_ID}")).json()
        slow = (await http.get(f"/api/deployment/{DEPLOYMENT_ID}?min_ms=5")).json()
        errors = (await http.get(f"/api/deployment/{DEPLOYMENT_ID}?errors=1")).json()
        page = await http.get(f"/deployment/{DEPLOYMENT_ID}")
        trace = await http.get(f"/traces/{'a' * 32}.json")
        missing = await http.get(f"/traces/{'c' * 32}.json")
    newest, oldest = data["traces"]["items"]
    assert (newest["trace_id"], newest["error"]) == ("b" * 32, True)
    assert (oldest["root"], oldest["spans"], oldest["processes"]) == ("GET /", 3, 2)
    assert oldest["duration_ns"] == 8_000_000
    assert [t["trace_id"] for t in slow["traces"]["items"]] == ["a" * 32]
    assert [t["trace_id"] for t in errors["traces"]["items"]] == ["b" * 32]
    assert "https://ui.perfetto.dev/#!/?url=http%3A%2F%2Fdash.test%2Ftraces%2F" in page.text
    assert trace.headers["access-control-allow-origin"] == "https://ui.perfetto.dev"
    events = trace.json()["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {"g main-0", "g fact-1"}
    assert sorted(e["dur"] for e in events if e["ph"] == "X") == [4000.0, 6000.0, 8000.0]
    assert missing.status_code == 404


def test_traces_module_reads_and_converts(tmp_path: Path) -> None:
    write_spans(tmp_path / "d")
    assert len(list(read_spans(tmp_path / "d"))) == 4  # the torn last line is skipped
    assert list(read_spans(tmp_path / "nothing")) == []
    (summary,) = recent_traces(read_spans(tmp_path / "d", "b" * 32))
    assert summary.error and summary.processes == 1
    assert chrome_trace([])["traceEvents"] == []


async def test_page_shows_every_section(source: FakeSource) -> None:
    source.samples = method_samples("0-aaaaaa", calls=3, errors=0, fast=3, slow=0)
    source.starting = ["app.Factorer"]
    async with client(Dashboard(source)) as http:
        page = await http.get(f"/deployment/{DEPLOYMENT_ID}")
        css = await http.get("/static/dashboard.css")
        unknown = await http.get("/deployment/nope")
    assert page.status_code == 200
    for section in ("components", "methods", "graph", "traces", "error-logs", "commands"):
        assert f'id="{section}"' in page.text
    assert "starting" in page.text and "init: app.Factorer" in page.text
    assert "pyweaver multi status" in page.text
    assert css.status_code == 200 and "table" in css.text
    assert unknown.status_code == 404


async def test_page_escapes_what_it_shows(source: FakeSource) -> None:
    source.deployment = Deployment(
        id=DEPLOYMENT_ID, app="<script>x</script>", deployer="multi", pid=os.getpid(), started=0
    )
    async with client(Dashboard(source)) as http:
        page = await http.get(f"/deployment/{DEPLOYMENT_ID}")
    assert "<script>x</script>" not in page.text and "&lt;script&gt;" in page.text


def test_a_replica_is_starting_until_every_activated_component_finished_init() -> None:
    group = Group(name="app.A", components=["app.A", "app.B"], replicas=1, is_main=False)
    slot = Slot(group=group, index=0, state="ready")
    group.activated = {"app.A", "app.B"}
    health: dict[str, Any] = {"healthy": True, "built": ["app.A"], "failed": {}}
    health["starting"] = _still_starting(slot, health)
    assert health["starting"] == ["app.B"]
    assert replica_status("ready", health) == "starting"
    health = {"healthy": True, "built": ["app.A", "app.B"], "failed": {}}
    health["starting"] = _still_starting(slot, health)
    assert replica_status("ready", health) == "healthy"
    failed = {"healthy": True, "built": ["app.A"], "failed": {"app.B": "ValueError"}}
    failed["starting"] = _still_starting(slot, failed)
    assert (failed["starting"], replica_status("ready", failed)) == ([], "failed")
    assert replica_status("restarting", {}) == "restarting"
    assert replica_status("ready", {"healthy": False, "error": "gone"}) == "unhealthy"


async def test_a_group_links_a_profile_of_its_replicas(
    source: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampled: list[tuple[list[str], float]] = []

    async def fake_profile(targets: Any, seconds: float) -> dict[str, Any]:
        sampled.append(([t.name for t in targets], seconds))
        return {"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": []}

    monkeypatch.setattr(_dashboard, "profile_targets", fake_profile)
    async with client(Dashboard(source)) as http:
        page = await http.get(f"/deployment/{DEPLOYMENT_ID}")
        profile = await http.get(
            f"/profile/{DEPLOYMENT_ID}.speedscope.json",
            params={"group": "main", "seconds": "2"},
        )
        bad = await http.get(f"/profile/{DEPLOYMENT_ID}.speedscope.json?seconds=soon")
        unknown = await http.get("/profile/nope.speedscope.json")
    assert f"/profile/{DEPLOYMENT_ID}.speedscope.json?group=app.Factorer" in page.text
    assert profile.status_code == 200, profile.text
    assert profile.json()["profiles"] == []
    assert "attachment" in profile.headers["content-disposition"]
    ((names, seconds),) = sampled
    (name,) = names  # main's one replica (the fake's other group has no live pid)
    assert name.startswith("main ") and name.endswith(f"pid {os.getpid()}")
    assert seconds == 2.0
    assert bad.status_code == 400
    assert unknown.status_code == 404
