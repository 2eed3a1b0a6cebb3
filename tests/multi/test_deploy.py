"""``pyweaver multi deploy`` end to end, with the small app in ``apps/chain``: main's exit
status, persisted logs, crash loops, status, junk bytes on every socket of the
deployment, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry, pid_alive
from pyweaver.deployers.multi._dashboard import dashboard_app
from pyweaver.deployers.multi._status import STATUS, fetch

pytestmark = pytest.mark.slow

CHAIN = Path(__file__).parent / "apps" / "chain" / "weaver.toml"


def pyweaver(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyweaver", *args]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir), **extra}


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_deploy_exits_with_mains_status_and_keeps_the_logs(data_dir: Path, backend: str) -> None:
    env = env_for(data_dir, CHAIN_EXIT="3", CHAIN_BACKEND=backend)
    result = run(pyweaver("multi", "deploy", str(CHAIN)), env)
    assert result.returncode == 3, result.stderr
    assert "total=5" in result.stdout
    logs = run(pyweaver("multi", "logs", "--format", "json"), env)
    entries = [json.loads(line) for line in logs.stdout.splitlines()]
    assert any(e["source"] == "stdout" and e["message"] == "total=5" for e in entries)
    ready = [e for e in entries if e["message"] == "adder ready"]
    # (main exits at once, so the second Adder replica may not have built Adder yet)
    assert ready and all(e["replica"] for e in ready)
    assert all(e["component"] == "app.Adder" and e["app"] == "chain" for e in ready)
    query = run(pyweaver("multi", "logs", 'component == "app.Adder"'), env)
    assert "adder ready" in query.stdout and "total=5" not in query.stdout
    # The deployment is over: nothing is registered, and purge removes its logs.
    assert Registry(data_dir).list() == []
    purged = run(pyweaver("multi", "purge"), env)
    assert "removed" in purged.stdout
    assert run(pyweaver("multi", "logs"), env).stdout == ""


def test_a_crash_loop_degrades_the_group_with_the_last_lines(data_dir: Path) -> None:
    # The group is degraded (not the deployment): main's call to it fails, and main's
    # exit ends the deployment.
    result = run(pyweaver("multi", "deploy", str(CHAIN)), env_for(data_dir, CHAIN_CRASH="1"))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "adder: cannot start, CHAIN_CRASH is set" in output
    # Whether main gives up before the fifth crash depends on the machine's speed; if
    # the loop is reached first, it degrades the group, never stops the deployment.
    if "keeps crashing" in output:
        assert "degraded" in output and "giving up" not in output


@pytest.fixture
def serving(
    data_dir: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = env_for(data_dir, CHAIN_SERVE="1")
    with (tmp_path / "deploy.log").open("w") as output:
        process = subprocess.Popen(
            pyweaver("multi", "deploy", str(CHAIN)),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield process, env
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def _status(data_dir: Path, *, replicas: int) -> dict[str, Any]:
    """The deployment's status once ``replicas`` weavelets are ready (bounded wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        deployments = Registry(data_dir).list("multi")
        if deployments:
            (deployment,) = deployments
            try:
                report: dict[str, Any] = anyio.run(
                    fetch, deployment.status_address, deployment.id, STATUS
                )
            except PyWeaverError:
                time.sleep(0.1)  # still starting, or a slow machine: ask again
                continue
            ready = [r for g in report["groups"] for r in g["replicas"] if r["state"] == "ready"]
            if len(ready) >= replicas:
                return report
        time.sleep(0.1)
    raise AssertionError("the deployment did not come up")


async def _call_as_stranger(address: str) -> str:
    """Why a client of another deployment cannot call ``address``."""
    try:
        async with call.Client(
            [address], deployment_id="another-deployment", fingerprint=b"\0" * 16, replica_wait=0.2
        ) as client:
            await client.call(call.method_key("app.Adder", "add"), b"", retriable=False)
    except BaseExceptionGroup as errors:
        (error,) = errors.exceptions
        return str(error)
    except PyWeaverError as error:
        return str(error)
    return "the call succeeded"


async def _dashboard(data_dir: Path) -> tuple[str, Any, str]:
    app = dashboard_app(data_dir)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        api = (await client.get("/api/status")).json()
        # The index lists deployments; a deployment's page shows its replicas.
        page = (await client.get(f"/deployment/{api[0]['deployment']['id']}")).text
        prometheus = (await client.get("/metrics")).text
    return page, api, prometheus


def _pids(report: dict[str, Any]) -> set[int]:
    return {r["pid"] for g in report["groups"] for r in g["replicas"] if r["pid"]}


def test_status_junk_bytes_and_ctrl_c(
    serving: tuple[subprocess.Popen[str], dict[str, str]], data_dir: Path
) -> None:
    process, env = serving
    report = _status(data_dir, replicas=3)
    pids = _pids(report)
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    groups = {g["name"]: g for g in report["groups"]}
    assert set(groups) == {"main", "app.Adder"}
    assert len(groups["app.Adder"]["replicas"]) == 2
    text = run(pyweaver("multi", "status"), env).stdout
    assert "app.Adder" in text and "healthy" in text
    # Metrics of every weavelet, merged: main called Adder.add once.
    metrics = run(pyweaver("multi", "metrics", "serviceweaver_method_count"), env).stdout
    assert 'serviceweaver_app="chain"' in metrics
    assert any(
        'component="app.Adder"' in line and 'method="add"' in line for line in metrics.splitlines()
    )

    # The dashboard shows the same.
    page, api, prometheus = anyio.run(_dashboard, data_dir)
    assert "app.Adder" in page and "status-healthy" in page
    assert api[0]["status"]["deployment"] == api[0]["deployment"]["id"]
    assert 'serviceweaver_app="chain"' in prometheus

    # Junk on every socket the deployment opened: the control and data sockets of
    # every weavelet, and the status socket.
    (deployment,) = Registry(data_dir).list("multi")
    run_dir = Path(deployment.status_address.removeprefix("unix://")).parent
    sockets = sorted(run_dir.glob("*"))
    assert len(sockets) >= 3 * 3
    junk = bytes(range(256)) * 64
    for path in sockets:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            try:
                sock.sendall(junk)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(4096)
            except OSError:
                pass  # the server may hang up on us: that is the point
    # Another deployment (another id in the handshake) is refused by every server.
    for path in sockets:
        assert "refused the handshake of this client" in anyio.run(_call_as_stranger, f"unix://{path}")
    after = _status(data_dir, replicas=3)
    assert _pids(after) == pids
    assert all(r["health"].get("healthy") for g in after["groups"] for r in g["replicas"]), after

    # Ctrl-C stops everything: every weavelet, the registry entry, the run dir.
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 128 + signal.SIGINT
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    assert Registry(data_dir).list() == []
    assert not run_dir.exists()
    # Every Adder weavelet ran its shutdown hook, and said so in the deployment's logs.
    logs = run(pyweaver("multi", "logs", "--format", "json", "msg == 'adder shutdown'"), env)
    stopped = {json.loads(line)["attrs"]["pid"] for line in logs.stdout.splitlines()}
    adder_pids = {r["pid"] for r in groups["app.Adder"]["replicas"]}
    assert stopped == {str(pid) for pid in adder_pids}


def test_weavelets_do_not_outlive_a_killed_deployer(
    serving: tuple[subprocess.Popen[str], dict[str, str]], data_dir: Path
) -> None:
    process, _ = serving
    pids = _pids(_status(data_dir, replicas=3))
    process.kill()  # SIGKILL: the deployer cannot stop anything itself
    process.wait(timeout=10)
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
