"""``pyweaver ray deploy --detach`` on a (one-node) Ray cluster inside a netns host.

``deploy --detach`` returns once the deployment is ready and says how to stop it;
``ray status`` shows it; calls go through its proxy; ``ray stop DEPLOYMENT --address``
stops it through its manager: afterwards no pyweaver actor is left on the cluster and no
pyweaver process (background deploying process, replica actor, weavelet) on the host.
Without ``--address``, ``--detach`` is refused (a local Ray would end with the command).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyweaver.deployers._registry import pid_alive
from tests.cluster.netns import Network
from tests.cluster.ray_cluster import RayCluster
from tests.ray.harness import ask, factors_app, factors_of, http_client, pyweaver_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster_hosts() -> int:
    return 1


def named_actors(cluster: RayCluster) -> list[str]:
    names: list[str] = cluster.run_driver("tests.ray.named_actors").result("actors")["names"]
    return names


def test_detach_status_stop(cluster: RayCluster, tmp_path: Path) -> None:
    host = cluster.network.host(1)
    env = {**cluster.process_env(), "PYWEAVER_DATA_DIR": str(tmp_path / "data")}
    config = factors_app(
        tmp_path / "app", '[ray]\nreplicas = 1\nlisteners.factors = {address = "0.0.0.0:0"}\n'
    )

    def pyweaver(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pyweaver", "ray", *args]
        return subprocess.run(
            Network.exec_argv(host, argv),
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
            check=False,
        )

    refused = pyweaver("deploy", str(config), "--detach")
    assert refused.returncode != 0 and "--detach needs --address" in refused.stderr

    began = time.monotonic()
    node = ("--address", cluster.address, "--node-ip-address", host.address)
    deployed = pyweaver("deploy", str(config), "--detach", *node)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    print(f"\n[ray deploy --detach] returned ready in {time.monotonic() - began:.1f} s")
    out = deployed.stdout
    deployment_id, pid = re.findall(r"deployment (\S+) \(background pid (\d+)\)", out)[0]
    background = int(pid)
    client = http_client(host)
    try:
        assert f"stop it with: pyweaver ray stop {deployment_id}" in out
        listener = re.findall(r"listener factors at (\S+)", out)[0]
        assert pid_alive(background)

        shown = pyweaver("status", "--json", timeout=60)
        assert shown.returncode == 0, shown.stderr
        [entry] = json.loads(shown.stdout)
        assert entry["deployment"]["id"] == deployment_id and not entry["error"]
        replicas = [r for g in entry["status"]["groups"] for r in g["replicas"]]
        assert len(replicas) == 2 and all(r["state"] == "ready" for r in replicas)

        address = listener.replace("0.0.0.0", host.address)
        assert ask(client, address, [12], until_ok=10)["answers"] == [factors_of(12)]
        assert any(name.endswith(f":{deployment_id}") for name in named_actors(cluster))

        stopped = pyweaver("stop", deployment_id[:8], *node, timeout=240)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stopped {deployment_id}" in stopped.stdout
        # `ray stop` returns once the background deploying process has exited.
        assert not pid_alive(background)
    finally:
        client.kill()
        if pid_alive(background):  # stop a deployment the test could not stop
            os.kill(background, signal.SIGTERM)
    assert not [name for name in named_actors(cluster) if deployment_id in name]
    deadline = time.monotonic() + 30
    while pyweaver_processes(host) and time.monotonic() < deadline:
        time.sleep(0.3)  # the killed actors' worker processes exit
    assert not pyweaver_processes(host)
    shown = pyweaver("status", "--json", timeout=60)
    assert json.loads(shown.stdout) == []
