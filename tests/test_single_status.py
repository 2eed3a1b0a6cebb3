"""A single-process app registers itself with a status endpoint: ``pyweaver single
status`` and the single dashboard show it, ``starting`` while a component's ``init``
runs and ``healthy`` after; it unregisters when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._dashboard import dashboard_app
from pyweaver.deployers.multi._status import STATUS, fetch

pytestmark = pytest.mark.slow

APP = Path(__file__).parent / "apps" / "slow_init_app.py"


def wait_for_status(data_dir: Path, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    last: Any = None
    while time.monotonic() < deadline:
        for deployment in Registry(data_dir).list("single"):
            try:
                last = anyio.run(fetch, deployment.status_address, deployment.id, STATUS)
            except PyWeaverError:
                continue
            if last["groups"][0]["replicas"][0]["status"] == want:
                return dict(last)
        time.sleep(0.1)
    raise AssertionError(f"never {want}: {last}")


async def dashboard_page(data_dir: Path, deployment_id: str) -> str:
    app = dashboard_app(data_dir, "single")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        response = await client.get(f"/deployment/{deployment_id}")
    assert response.status_code == 200
    return response.text


def test_single_app_is_starting_until_init_returns_then_healthy(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    gate = tmp_path / "gate"
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir), "SLOW_INIT_GATE": str(gate)}
    env.pop("PYWEAVER_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, str(APP)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        report = wait_for_status(data_dir, "starting")
        (replica,) = report["groups"][0]["replicas"]
        assert replica["pid"] == process.pid
        assert replica["health"]["starting"] == ["slow_init_app.Slow"]
        gate.touch()
        report = wait_for_status(data_dir, "healthy")
        assert report["groups"][0]["replicas"][0]["health"]["built"] == ["slow_init_app.Slow"]
        listed = subprocess.run(
            [sys.executable, "-m", "pyweaver", "single", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (entry,) = json.loads(listed.stdout)
        assert entry["deployment"]["app"] == "slow_init_app"
        assert entry["status"]["groups"][0]["replicas"][0]["status"] == "healthy"
        page = anyio.run(dashboard_page, data_dir, entry["deployment"]["id"])
        assert "slow_init_app" in page and "status-healthy" in page
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert Registry(data_dir).list("single") == []
