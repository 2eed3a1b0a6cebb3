"""``pyweaver ray deploy`` with no address: a local Ray, started and stopped by pyweaver.

Runs inside one netns host (Ray binds every interface; in a namespace it cannot reach
anything else on the machine). Deploy, call through the proxy, status, stop: nothing
is left running in the host afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import netns, ray_cluster
from tests.cluster.netns import Network
from tests.ray.harness import Deploy, ask, factors_app, factors_of, http_client, pyweaver_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def network() -> Iterator[Network]:
    reason = ray_cluster.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    netns.cleanup_leftovers()
    with Network.create(1) as created:
        yield created


def test_deploy_call_status_stop_leaves_nothing(network: Network, tmp_path: Path) -> None:
    host = network.host(1)
    config = factors_app(
        tmp_path / "app",
        '[ray]\nreplicas = 2\nlisteners.factors = {address = "127.0.0.1:0"}\n',
    )
    began = time.monotonic()
    deploy = Deploy(host, config, tmp_path / "data")
    client = http_client(host)
    try:
        deploy.wait_ready()
        print(f"\n[ray single host] deploy ready in {time.monotonic() - began:.1f} s")
        address = deploy.listeners["factors"]
        answers = ask(client, address, [12, 30, 97], until_ok=10)
        assert answers["answers"] == [factors_of(12), factors_of(30), factors_of(97)]
        status = deploy.status()
        groups = {group["name"]: group for group in status["groups"]}
        assert set(groups) == {"main", "app.Factorer"}
        factorers = groups["app.Factorer"]["replicas"]
        assert [r["slot"] for r in factorers] == ["app.Factorer#0", "app.Factorer#1"]
        assert all(r["state"] == "ready" and r["health"]["healthy"] for r in factorers)
        assert all(r["node_ip"] == host.address for r in factorers)
        assert len({r["pid"] for r in factorers}) == 2
        assert status["listeners"][0]["proxy"] == address
        assert deploy.stop() == 128 + 15
        assert "pyweaver ray: stopped" in deploy.output()
    finally:
        client.kill()
        deploy.kill()
    # The local Ray went with the command, and every replica and weavelet with it.
    assert netns.pids_in(host.netns) == [], pyweaver_processes(host)
    logs = list((tmp_path / "data" / "logs").glob("*/log*.jsonl"))
    assert logs and "factors listener available" in logs[0].read_text()
