"""The Ray deployer on a real 3-node Ray cluster across netns hosts (tests/cluster).

One cluster and one deployment of examples/factors serve the module's single test,
which walks through: cross-host calls, a replica SIGKILLed (Ray restarts it, routing
follows), a second deployment of the same app (isolated, stopped by name through its
manager), a host whose link is cut (its replica moves, calls recover), and stop (no
actor and no process left). Times are printed (``-s``), never asserted.

Placement: main is pinned to h1 (custom resource ``h1``), where the deploying process
and its proxy run; each Factorer replica asks for 0.85 CPU of nodes that have 1, so no
two share a node and at least one is on another host than main.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.netns import Network
from tests.cluster.ray_cluster import RayCluster
from tests.ray.harness import (
    Deploy,
    ask,
    factors_app,
    factors_of,
    http_client,
    pyweaver_processes,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RAY_SECTION = """
[ray]
listeners.factors = {address = "0.0.0.0:0"}
[ray.groups.main]
resources = {h1 = 1}
[ray.groups."app.Factorer"]
replicas = 2
cpus = 0.85
"""


SECOND_SECTION = """
[ray]
cpus = 0.1
listeners.factors = {address = "0.0.0.0:0"}
"""


def wait_for(what: str, check: Any, timeout_s: float = 120.0) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if check():
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_factors_across_hosts(cluster: RayCluster, tmp_path: Path) -> None:
    network = cluster.network
    head = network.host(1)
    env = cluster.process_env()
    data = tmp_path / "data"
    deploy = Deploy(
        head, factors_app(tmp_path / "v1", RAY_SECTION), data, address=cluster.address, env=env
    )
    client = http_client(head, timeout_s=800)
    second: Deploy | None = None
    try:
        began = time.monotonic()
        deploy.wait_ready()
        print(f"\n[ray deploy] 3-node cluster: ready in {time.monotonic() - began:.1f} s")
        address = deploy.listeners["factors"].replace("0.0.0.0", head.address)

        # Cross-host: main on h1, the Factorer replicas on two different hosts.
        main = deploy.replicas("main")[0]
        factorers = deploy.replicas("app.Factorer")
        assert main["node_ip"] == head.address
        nodes = {r["node_ip"] for r in factorers}
        assert len(nodes) == 2 and nodes - {head.address}
        xs = list(range(2, 42))
        answers = ask(client, address, xs, until_ok=10)
        assert answers["answers"] == [factors_of(x) for x in xs]
        warm = ask(client, address, [36] * 200)["latencies_us"][20:]
        print(
            f"[ray latency] GET through proxy, main on h1 -> Factorer remote call:"
            f" p50 {statistics.median(warm):.0f} us over {len(warm)} calls"
        )

        # A replica SIGKILLed: Ray restarts it in its slot, routing follows.
        victim = next(r for r in factorers if r["node_ip"] != head.address)
        os.kill(victim["actor_pid"], signal.SIGKILL)
        killed = time.monotonic()

        def restarted() -> bool:
            now = {r["slot"]: r for r in deploy.replicas("app.Factorer")}[victim["slot"]]
            return bool(now["starts"] >= 2 and now["state"] == "ready")

        restart_s = wait_for("the restart", restarted)
        answers = ask(client, address, xs, until_ok=20)
        answered_s = time.monotonic() - killed
        assert answers["answers"] == [factors_of(x) for x in xs]
        now = {r["slot"]: r for r in deploy.replicas("app.Factorer")}[victim["slot"]]
        assert now["actor_pid"] != victim["actor_pid"] and now["pid"] != victim["pid"]
        print(
            f"[ray restart after SIGKILL] replica re-registered {restart_s:.2f} s after the"
            f" kill; all calls answered {answered_s:.2f} s after it"
            f" ({answers['failures']} failed tries)"
        )

        # A second deployment of the same app: its own replicas, its own proxy.
        second = Deploy(
            head,
            factors_app(
                tmp_path / "v2", '[ray]\ncpus = 0.1\nlisteners.factors = {address = "0.0.0.0:0"}\n'
            ),
            data,
            address=cluster.address,
            env=env,
        )
        second.wait_ready()
        assert second.deployment_id != deploy.deployment_id
        mine = {r["address"] for g in deploy.status()["groups"] for r in g["replicas"]}
        theirs = {r["address"] for g in second.status()["groups"] for r in g["replicas"]}
        assert not mine & theirs
        other = second.listeners["factors"].replace("0.0.0.0", head.address)
        assert ask(client, other, [12], until_ok=10)["answers"] == [factors_of(12)]
        # Stopped by name, through its manager, from another process.
        stopped = subprocess.run(
            Network.exec_argv(
                head,
                [sys.executable, "-m", "pyweaver", "ray", "stop", second.deployment_id,
                 "--address", cluster.address, "--node-ip-address", head.address],
            ),
            capture_output=True, text=True, env=second.env, timeout=120, check=False,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        assert second.process.wait(timeout=60) == 0
        assert "stopped through the manager" in second.output()
        assert ask(client, address, [12])["answers"] == [factors_of(12)]  # v1 unaffected

        # A host cut off: its replica moves to another host, calls recover.
        factorers = deploy.replicas("app.Factorer")
        moving = next(r for r in factorers if r["node_ip"] != head.address)
        host = next(h for h in network.hosts if h.address == moving["node_ip"])
        network.cut(host)
        cut = time.monotonic()
        try:

            def moved() -> bool:
                now = {r["slot"]: r for r in deploy.replicas("app.Factorer")}[moving["slot"]]
                return bool(now["state"] == "ready" and now["node_ip"] != host.address)

            moved_s = wait_for("the move", moved, timeout_s=240)
            answers = ask(client, address, xs, until_ok=30)
            answered_s = time.monotonic() - cut
            assert answers["answers"] == [factors_of(x) for x in xs]
        finally:
            network.restore(host)
        print(
            f"[ray failover after link cut] replica re-registered on another host"
            f" {moved_s:.2f} s after the cut; all calls answered {answered_s:.2f} s after it"
            f" (health check: {cluster.health_check or 'Ray defaults'})"
        )

        assert deploy.stop() == 128 + 15
    finally:
        client.kill()
        deploy.kill()
        if second is not None:
            second.kill()
    # No replica, manager or weavelet is left on any host (Ray's own processes stay).
    for each in network.hosts:
        wait_for("the actors to go", lambda h=each: not pyweaver_processes(h), timeout_s=30)
    cluster.restart_node(host)
