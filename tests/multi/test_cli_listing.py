"""`pyweaver multi status|metrics|logs|purge` as another program sees them: piped output
keeps every value whole (so `| grep` works), and `--json` gives data to parse.

Each test serves a fake deployment's status endpoint in the test process, registers it
in an isolated registry (``PYWEAVER_DATA_DIR``) and runs the real CLI as a subprocess
whose stdout is a pipe.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from prometheus_client import parser as prometheus_parser
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser

from pyweaver.deployers._registry import DATA_DIR_ENV, Deployment, Registry
from pyweaver.deployers.multi._status import serve_status

# prometheus-client leaves its text parsers unannotated.
text_string_to_metric_families = cast(
    Callable[[str], Iterator[Metric]], prometheus_parser.text_string_to_metric_families
)
parse_openmetrics = cast(
    Callable[[str], Iterator[Metric]], openmetrics_parser.text_string_to_metric_families
)

pytestmark = pytest.mark.anyio

LONG_COMPONENT = "ledger_app.accounts.LedgerWithAVeryLongNameThatNoTerminalFits"
LONG_APP = "an-application-whose-name-is-longer-than-its-column"


def report() -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": LONG_COMPONENT,
                "components": [LONG_COMPONENT, "ledger_app.accounts.Audit"],
                "activated": [LONG_COMPONENT],
                "routed": True,
                "replicas": [
                    {
                        "slot": f"{LONG_COMPONENT}#0",
                        "replica": "0123456789abcdef",
                        "pid": 4242,
                        "state": "ready",
                        "starts": 1,
                        "last_exit": None,
                        "health": {"healthy": True, "built": [LONG_COMPONENT], "failed": {}},
                    }
                ],
            }
        ],
        "listeners": [
            {"name": "ledger", "proxy": "127.0.0.1:9999", "backends": ["127.0.0.1:10001"]}
        ],
    }


SAMPLES = [
    {
        "name": "serviceweaver_method_count",
        "kind": "counter",
        "help": "Count of Service Weaver component method invocations",
        "labels": {"component": LONG_COMPONENT, "method": "balance"},
        "value": 7,
    },
    {"name": "ledger_accounts", "kind": "gauge", "help": "Accounts", "labels": {}, "value": 3},
]


@asynccontextmanager
async def fake_deployment(data_dir: Path) -> AsyncIterator[Deployment]:
    """A live deployment (this process) with a status endpoint, registered under data_dir."""

    async def status() -> dict[str, Any]:
        return report()

    async def metrics() -> list[dict[str, Any]]:
        return SAMPLES

    deployment_id = str(uuid.uuid4())
    registry = Registry(data_dir)
    async with serve_status(
        f"unix://{data_dir / 'status.sock'}",
        deployment_id=deployment_id,
        status=status,
        metrics=metrics,
    ) as address:
        deployment = Deployment(
            id=deployment_id,
            app=LONG_APP,
            deployer="multi",
            pid=os.getpid(),
            started=time.time(),
            status_address=address,
            config_path="/nowhere/weaver.toml",
        )
        registry.register(deployment)
        try:
            yield deployment
        finally:
            registry.unregister(deployment_id)


async def run_cli(data_dir: Path, *args: str) -> str:
    """Run ``pyweaver multi ARGS`` with stdout a pipe, on an 80-column 'terminal'."""
    env = {**os.environ, DATA_DIR_ENV: str(data_dir), "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    result = await anyio.run_process(
        [sys.executable, "-m", "pyweaver", "multi", *args], env=env, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A short path: the status socket lives here, and Unix socket paths are limited.
    return Path(tmp_path_factory.mktemp("cli"))


@pytest.mark.slow  # runs the CLI as a subprocess
async def test_piped_status_keeps_full_names(data_dir: Path) -> None:
    async with fake_deployment(data_dir) as deployment:
        out = await run_cli(data_dir, "status")
    assert "…" not in out
    lines = out.splitlines()
    # `pyweaver multi status | grep LedgerWith` finds the component, whole, on one line.
    matching = [line for line in lines if "LedgerWithAVeryLong" in line]
    assert matching, out
    assert any(LONG_COMPONENT in line and "ready" in line for line in matching), out
    assert any(LONG_APP in line and deployment.id in line for line in lines), out
    assert any("127.0.0.1:9999" in line and "ledger" in line for line in lines), out


@pytest.mark.slow  # runs the CLI as a subprocess
async def test_status_json(data_dir: Path) -> None:
    async with fake_deployment(data_dir) as deployment:
        out = await run_cli(data_dir, "status", "--json")
    (entry,) = json.loads(out)
    assert entry["deployment"]["id"] == deployment.id
    assert entry["deployment"]["app"] == LONG_APP
    assert entry["error"] == ""
    assert entry["status"]["groups"][0]["components"][0] == LONG_COMPONENT


@pytest.mark.slow  # runs the CLI as a subprocess
async def test_status_json_with_no_deployments(data_dir: Path) -> None:
    assert json.loads(await run_cli(data_dir, "status", "--json")) == []


@pytest.mark.slow  # runs the CLI as a subprocess
async def test_metrics_json_and_text(data_dir: Path) -> None:
    async with fake_deployment(data_dir):
        out = await run_cli(data_dir, "metrics", "--json", "method")
        text = await run_cli(data_dir, "metrics")
        openmetrics = await run_cli(data_dir, "metrics", "--openmetrics", "ledger")
    (sample,) = json.loads(out)
    assert sample["name"] == "serviceweaver_method_count"
    assert sample["labels"]["component"] == LONG_COMPONENT
    assert sample["value"] == 7
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (count,) = families["serviceweaver_method_count"].samples
    assert count.labels == {"component": LONG_COMPONENT, "method": "balance"}
    assert count.value == 7
    (accounts,) = families["ledger_accounts"].samples
    assert accounts.value == 3
    assert openmetrics.endswith("# EOF\n")
    assert [f.name for f in parse_openmetrics(openmetrics)] == ["ledger_accounts"]


@pytest.mark.slow  # runs the CLI as a subprocess
async def test_logs_and_purge_json(data_dir: Path) -> None:
    assert await run_cli(data_dir, "logs", "--json") == ""
    purged = json.loads(await run_cli(data_dir, "purge", "--json"))
    assert purged["removed"] == [] and purged["running"] == []


async def test_dashboard_api_and_metrics_negotiation(data_dir: Path) -> None:
    import httpx

    from pyweaver.deployers.multi._dashboard import dashboard_app

    transport = httpx.ASGITransport(app=dashboard_app(data_dir))
    async with (
        fake_deployment(data_dir) as deployment,
        httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client,
    ):
        api = (await client.get("/api/status")).json()
        prometheus = await client.get("/metrics")
        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert api[0]["deployment"]["id"] == deployment.id
    assert api[0]["status"]["groups"][0]["name"] == LONG_COMPONENT
    assert prometheus.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = [f.name for f in text_string_to_metric_families(prometheus.text)]
    assert names == ["serviceweaver_method_count", "ledger_accounts"]
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert [f.name for f in parse_openmetrics(openmetrics.text)] == names
