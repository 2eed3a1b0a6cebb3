"""One dashboard for ``multi`` and ``ray`` deployments: which registry entries it lists,
and what it makes of a Ray deployment's status report (no Ray needed: the registry is a
temporary directory and the status endpoint a fake :class:`Source`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pyweaver.deployers._registry import Deployment, Registry
from pyweaver.deployers.multi._dashboard import Dashboard, RegistrySource, dashboard_app
from pyweaver.deployers.multi._status import STATUS


def entry(deployment_id: str, deployer: str) -> Deployment:
    return Deployment(
        id=deployment_id,
        app="factors",
        deployer=deployer,
        pid=os.getpid(),
        started=time.time(),
        status_address="unix:///nonexistent/status.sock",
    )


def test_multi_and_ray_dashboards_list_both_single_stays_apart(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for deployment_id, deployer in (("m1", "multi"), ("r1", "ray"), ("s1", "single")):
        registry.register(entry(deployment_id, deployer))
    shown = {
        d: sorted(x.id for x in RegistrySource(tmp_path, d).deployments())
        for d in ("multi", "ray", "single")
    }
    assert shown == {"multi": ["m1", "r1"], "ray": ["m1", "r1"], "single": ["s1"]}


@pytest.mark.anyio
async def test_unreachable_ray_deployment_is_listed_with_its_error(tmp_path: Path) -> None:
    Registry(tmp_path).register(entry("r1", "ray"))
    listed = await dashboard_app(tmp_path).deployments()
    assert [(x["deployment"]["id"], x["deployment"]["deployer"]) for x in listed] == [("r1", "ray")]
    assert listed[0]["error"]


RAY_REPORT: dict[str, Any] = {
    "deployment": "r1",
    "app": "factors",
    "deployer": "ray",
    "started": 0.0,
    "groups": [
        {
            "name": "app.Factorer",
            "components": ["app.Factorer"],
            "activated": ["app.Factorer"],
            "replicas": [
                {
                    "slot": "app.Factorer#0",
                    "replica": "app.Factorer#0@10.0.0.2/77",
                    # A pid on another machine: never to be looked up in this /proc.
                    "pid": os.getpid(),
                    "node_ip": "10.0.0.2",
                    "state": "ready",
                    "status": "healthy",
                    "starts": 2,
                    "restarts": 1,
                    "health": {"healthy": True},
                    "usage": None,
                    "last_exit": None,
                }
            ],
        }
    ],
    "listeners": [{"name": "factors", "proxy": "0.0.0.0:4000", "backends": ["10.0.0.2:5"]}],
}


class RaySource:
    def deployments(self) -> list[Deployment]:
        return [entry("r1", "ray")]

    async def ask(self, deployment: Deployment, method: bytes) -> Any:
        return RAY_REPORT if method == STATUS else []

    def logs_dir(self, deployment: Deployment) -> Path:
        return self.root / deployment.id

    def __init__(self, root: Path) -> None:
        self.root = root


@pytest.mark.anyio
async def test_ray_deployment_page_uses_the_reports_usage_and_ray_commands(
    tmp_path: Path,
) -> None:
    page = await Dashboard(RaySource(tmp_path), title="t").deployment("r1")
    assert page is not None
    replica = page["groups"][0]["replicas"][0]
    # The report said "no usage known" for a remote pid: not this machine's process.
    assert replica["usage"] is None and replica["cpu_percent"] is None
    assert replica["status"] == "healthy" and replica["restarts"] == 1
    commands = {c["what"]: c["command"] for c in page["commands"]}
    assert commands["stop"] == "pyweaver ray stop r1"
    assert commands["logs"].startswith("pyweaver ray logs ")
    assert "profile" not in commands
