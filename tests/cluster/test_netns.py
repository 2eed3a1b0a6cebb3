"""The netns "hosts": reachability, link cuts, teardown, leftovers, and skip reasons."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import netns, ray_cluster
from tests.cluster.netns import Host, Network

REPO_ROOT = Path(__file__).resolve().parents[2]

needs_netns = pytest.mark.skipif(netns.skip_reason() is not None, reason=str(netns.skip_reason()))


def test_skip_reason_names_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in str(netns.skip_reason())


def test_skip_reason_names_iproute2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "install-cluster-deps.sh" in str(netns.skip_reason())


def test_skip_reason_names_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "skip_reason", lambda: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert ".[ray]" in str(ray_cluster.skip_reason())


def _connects(client: Host, server: Host, port: int) -> bool:
    code = (
        "import socket, sys\n"
        f"try: socket.create_connection(({server.address!r}, {port}), timeout=1).close()\n"
        "except OSError: sys.exit(1)\n"
    )
    argv = Network.exec_argv(client, [sys.executable, "-c", code])
    return subprocess.run(argv, timeout=30, check=False).returncode == 0


@pytest.mark.slow
@needs_netns
def test_hosts_reach_each_other_until_cut() -> None:
    with Network.create(2) as network:
        first, second = network.hosts
        assert (first.address, second.address) == ("10.211.0.1", "10.211.0.2")
        listen = (
            "import socket, time\n"
            f"s = socket.create_server(({second.address!r}, 7000), backlog=16)\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n"
        )
        server = subprocess.Popen(
            Network.exec_argv(second, [sys.executable, "-c", listen]),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "up"
            assert _connects(first, second, 7000)
            network.cut(second)
            assert not _connects(first, second, 7000)
            network.restore(second)
            assert _connects(first, second, 7000)
        finally:
            ray_cluster.stop_process_group(server, grace_s=1)
            if server.stdout is not None:
                server.stdout.close()


@pytest.mark.slow
@needs_netns
def test_close_kills_what_runs_inside_and_deletes_everything() -> None:
    network = Network.create(1)
    host = network.host(1)
    sleeper = subprocess.Popen(Network.exec_argv(host, ["sleep", "60"]), start_new_session=True)
    try:
        # `ip netns exec` enters the namespace, then execs sleep (same PID): close
        # only once it is inside, or it may enter a namespace already deleted.
        deadline = time.monotonic() + 10
        while sleeper.pid not in netns.pids_in(host.netns):
            assert time.monotonic() < deadline, "the sleeper never entered its namespace"
            assert sleeper.poll() is None, "the sleeper exited before entering"
            time.sleep(0.02)
        network.close()
        assert sleeper.wait(timeout=10) != 0
    finally:
        if sleeper.poll() is None:  # failed above: do not leave it running
            sleeper.kill()
            sleeper.wait(timeout=10)
    assert not any(name.startswith(network.run_id) for name in netns.list_namespaces())
    assert not network.run_dir.exists()
    network.close()  # idempotent


@pytest.mark.slow
@needs_netns
def test_cleanup_removes_leftovers_of_a_crashed_run_only() -> None:
    crash = (
        "import json, os, subprocess\n"
        "from tests.cluster.netns import Network\n"
        "network = Network.create(1)\n"
        "sleeper = subprocess.Popen(network.exec_argv(network.host(1), ['sleep', '60']),\n"
        "    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,\n"
        "    start_new_session=True)\n"
        "print(json.dumps({'run_id': network.run_id, 'run_dir': str(network.run_dir),\n"
        "                  'sleeper': sleeper.pid}), flush=True)\n"
        "os._exit(0)  # crash: no teardown\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", crash],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    leftover = json.loads(done.stdout)
    with Network.create(1) as live:
        assert any(name.startswith(leftover["run_id"]) for name in netns.list_namespaces())
        removed = netns.cleanup_leftovers()
        assert f"{leftover['run_id']}-h1" in removed
        assert not any(name.startswith(leftover["run_id"]) for name in netns.list_namespaces())
        assert not Path(leftover["run_dir"]).exists()
        # Our own, live network is untouched.
        assert {f"{live.run_id}-h1", f"{live.run_id}-sw"} <= set(netns.list_namespaces())
        assert live.run_dir.exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(leftover["sleeper"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the process left inside the crashed run's namespace is still alive")
