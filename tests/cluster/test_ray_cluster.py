"""The multi-host test infrastructure works: a real Ray cluster across netns hosts.

One 3-host cluster serves the whole module (about 10 s to start on 2 cores). Times are
printed (run with `-s` to see them), never asserted. The partition test runs last and
restarts the node it cut, so the fixture stays usable whatever order is chosen.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.cluster import tcp_latency
from tests.cluster.netns import Network
from tests.cluster.ray_cluster import DRIVERS, RayCluster

pytestmark = pytest.mark.slow


def test_cluster_sees_every_host(cluster: RayCluster) -> None:
    nodes = cluster.wait_for_nodes(len(cluster.network.hosts), timeout_s=30)
    rss = cluster.rss_megabytes()
    print("\n[memory, idle] " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()))
    assert nodes["alive"] == sorted(host.address for host in cluster.network.hosts)


def test_actor_pinned_to_each_host_runs_there(cluster: RayCluster) -> None:
    placed = cluster.run_driver(f"{DRIVERS}.placement").result("placed")
    print(f"\n[placement] one actor per host in {placed['seconds']:.2f} s")
    for host in cluster.network.hosts:
        report = placed["actors"][host.name]
        assert report["node_ip"] == host.address
        assert report["node_id"] == placed["node_ids"][host.name]
        assert report["bound_host_address"], f"actor for {host.name} is not in its namespace"
    assert len({report["pid"] for report in placed["actors"].values()}) == len(
        cluster.network.hosts
    )


def test_actors_on_two_hosts_talk_plain_tcp(cluster: RayCluster) -> None:
    server, client = cluster.network.host(2), cluster.network.host(3)
    echo = cluster.run_driver(f"{DRIVERS}.tcp_echo", server.name, client.name, "2000").result(
        "echo"
    )
    print(
        f"\n[tcp between actors] {client.name}->{server.name}: p50 {echo['p50_us']:.0f} us,"
        f" p99 {echo['p99_us']:.0f} us over {echo['count']} round trips"
    )
    assert echo["server_address"][0] == server.address
    assert echo["client_ip"] == client.address
    # The server saw the client's own address: the connection went host to host directly.
    assert echo["peers"] == [client.address]


def test_raw_tcp_latency_between_hosts_and_loopback(network: Network) -> None:
    first, second = network.host(1), network.host(2)
    between = tcp_latency.measure(second, first, second.address, count=2000)
    loopback = tcp_latency.measure(first, first, "127.0.0.1", count=2000)
    print(
        f"\n[raw tcp rtt, 64 B] between hosts p50 {between['p50_us']:.0f} us"
        f" (p99 {between['p99_us']:.0f}); loopback p50 {loopback['p50_us']:.0f} us"
        f" (p99 {loopback['p99_us']:.0f})"
    )
    assert between["count"] == loopback["count"] == 2000


def test_killed_actor_is_restarted_by_ray(cluster: RayCluster) -> None:
    host = cluster.network.host(2)
    with cluster.running_driver(f"{DRIVERS}.restart", host.name) as driver:
        victim = driver.expect("victim")
        assert victim["node_ip"] == host.address
        os.kill(victim["pid"], signal.SIGKILL)
        driver.send({"killed_at": time.monotonic()})
        restarted = driver.expect("restarted")
        driver.finish()
    print(
        f"\n[restart after SIGKILL] constructor re-ran after"
        f" {restarted['constructor_seconds']:.2f} s, first answer after"
        f" {restarted['answered_seconds']:.2f} s ({restarted['failed_calls']} failed calls)"
    )
    assert restarted["new_pid"] != victim["pid"]
    assert restarted["node_ip"] == host.address


def test_working_dir_ships_code_to_hosts_without_it(cluster: RayCluster, tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    marker = f"shipped-{os.getpid()}-{time.monotonic_ns()}"
    (shipped / "pw_shipped.py").write_text(f"VALUE = {marker!r}\n")
    workers = cluster.network.hosts[1:]
    result = cluster.run_driver(
        f"{DRIVERS}.working_dir", str(shipped), *(host.name for host in workers)
    ).result("shipped")
    print(f"\n[working_dir] ray.init with upload took {result['connect_seconds']:.2f} s")
    for host in workers:
        report = result["reports"][host.name]
        assert report["value"] == marker
        assert report["node_ip"] == host.address
        # Imported from the copy unpacked under that host's own Ray temp dir, not from the
        # directory the driver shipped.
        assert Path(report["file"]).is_relative_to(host.home), report
        assert not Path(report["file"]).is_relative_to(shipped)


@pytest.mark.timeout(300)  # room for Ray's default health check (about a minute)
def test_partitioned_host_loses_its_actor_to_another_host(cluster: RayCluster) -> None:
    network = cluster.network
    host = network.host(len(network.hosts))
    try:
        with cluster.running_driver(f"{DRIVERS}.failover", host.name, timeout_s=240) as driver:
            placed = driver.expect("placed")
            assert placed["node_ip"] == host.address
            network.cut(host)
            driver.send({"cut_at": time.monotonic()})
            moved = driver.expect("moved")
            driver.finish()
    finally:
        network.restore(host)
    check = cluster.health_check
    settings = (
        "Ray's default health check"
        if check is None
        else f"health check period {check.period_ms} ms, timeout {check.timeout_ms} ms,"
        f" threshold {check.failure_threshold}"
    )
    print(
        f"\n[failover after link cut] {settings}: node dead after"
        f" {moved['node_dead_seconds']:.2f} s, actor re-created on {moved['new_node_ip']}"
        f" after {moved['constructor_seconds']:.2f} s, answering after"
        f" {moved['answered_seconds']:.2f} s"
    )
    assert moved["new_node_ip"] != host.address
    assert moved["node_dead_seconds"] is not None
    # A node the GCS declared dead never comes back: give the host a fresh one.
    began = time.monotonic()
    cluster.restart_node(host)
    cluster.wait_for_nodes(len(network.hosts), timeout_s=60)
    print(f"[failover] fresh node on {host.name} rejoined in {time.monotonic() - began:.1f} s")
