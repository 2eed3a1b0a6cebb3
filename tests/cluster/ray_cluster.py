"""A real Ray cluster across `netns` hosts, and drivers run against it.

Theory of operation. `RayCluster.start(network)` runs `ray start --head --block` inside
host 1 and `ray start --address=<head>:6379 --block` inside every other host, each as a
child process in its own session (so its PID is also its process group id), with its own
`--temp-dir` in the host's private directory and a small object store. Readiness is "the
node printed `Ray runtime started`" for each node, then a driver inside host 1 that sees
every node alive in the GCS. Everything is bounded in time.

Stopping never uses `ray stop` (it kills every Ray process on the machine, including other
people's clusters): each node's process group gets SIGTERM, then SIGKILL after a grace
period, and whatever is still running inside the host's namespace (actor workers spawned by
the raylet) is SIGKILLed by PID.

The GCS health check is shortened by default (`HealthCheck`, passed as
`RAY_health_check_*` environment variables) so that a partitioned node is declared dead in
seconds rather than the default ~60 s; `health_check=None` leaves Ray's own defaults.

Drivers are Python scripts run inside a host's namespace (`ip netns exec`). They find the
cluster through two environment variables, `RAY_ADDRESS` (the head's GCS address) and
`PYWEAVER_NODE_IP` (the driver host's own address, to pass as `ray.init(_node_ip_address=)`:
inside a namespace Ray cannot guess it). They report to the test by printing lines
`RESULT {json}` and may read instructions as JSON lines on stdin (`Driver.send`).

The test process itself never imports ray.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from tests.cluster import netns
from tests.cluster.netns import Host, Network

GCS_PORT = 6379
RESULT_PREFIX = "RESULT "
DRIVERS = "tests.cluster.drivers"  # drivers run as `python -m tests.cluster.drivers.<name>`
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class HealthCheck:
    """The GCS's node health check. Default Ray: 5 s initial delay, 3 s period, 10 s
    timeout, 5 failures, about a minute to declare a partitioned node dead (measured 66 s)."""

    initial_delay_ms: int = 1000
    period_ms: int = 1000
    timeout_ms: int = 1000
    failure_threshold: int = 3

    def env(self) -> dict[str, str]:
        return {
            "RAY_health_check_initial_delay_ms": str(self.initial_delay_ms),
            "RAY_health_check_period_ms": str(self.period_ms),
            "RAY_health_check_timeout_ms": str(self.timeout_ms),
            "RAY_health_check_failure_threshold": str(self.failure_threshold),
        }


SHORT_HEALTH_CHECK = HealthCheck()


def skip_reason() -> str | None:
    """Why a Ray cluster cannot run here, or None when it can."""
    reason = netns.skip_reason()
    if reason is not None:
        return reason
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed; pip install -e '.[ray]'"
    if not ray_executable().exists():
        return f"the `ray` command is missing next to {sys.executable}"
    return None


def ray_executable() -> Path:
    return Path(sys.executable).parent / "ray"


def stop_process_group(process: subprocess.Popen[Any], grace_s: float = 3.0) -> None:
    """SIGTERM the process's group, wait up to `grace_s`, then SIGKILL the group and reap.

    The process must have been started with `start_new_session=True`, so its PID is its
    process group id and the group holds nothing but it and its descendants.
    """
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    # The leader may be gone while descendants linger: kill the group regardless.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5.0)


@dataclass
class RayNode:
    host: Host
    process: subprocess.Popen[bytes]
    log: Path
    temp_dir: Path
    started_at: float


@dataclass
class DriverOutput:
    returncode: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def result(self, tag: str) -> dict[str, Any]:
        """The one result with `"tag": tag`."""
        found = [r for r in self.results if r.get("tag") == tag]
        if len(found) != 1:
            raise AssertionError(f"expected one result tagged {tag!r}, got {self.results!r}")
        return found[0]


class DriverError(AssertionError):
    def __init__(self, message: str, stderr: str) -> None:
        tail = "\n".join(stderr.splitlines()[-40:])
        super().__init__(f"{message}\n--- driver stderr (tail) ---\n{tail}")


class Driver:
    """A running driver script: read its `RESULT` lines, send it JSON lines on stdin."""

    def __init__(self, process: subprocess.Popen[str], timeout_s: float) -> None:
        self.process = process
        self.deadline = time.monotonic() + timeout_s
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(process.stdout, self._stdout, True)),
            threading.Thread(target=self._pump, args=(process.stderr, self._stderr, False)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _pump(self, stream: TextIO, sink: list[str], results: bool) -> None:
        for line in stream:
            sink.append(line)
            if results and line.startswith(RESULT_PREFIX):
                self._lines.put(line[len(RESULT_PREFIX) :])
        if results:
            self._lines.put(None)

    def expect(self, tag: str) -> dict[str, Any]:
        """Wait (until the driver's deadline) for the next result; it must carry `tag`."""
        remaining = self.deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            raise DriverError(f"timed out waiting for {tag!r}", "".join(self._stderr)) from None
        if line is None:
            self.process.wait(timeout=10)
            raise DriverError(
                f"driver exited ({self.process.returncode}) before {tag!r}", self.stderr()
            )
        result: dict[str, Any] = json.loads(line)
        if result.get("tag") != tag:
            raise DriverError(f"expected {tag!r}, got {result!r}", self.stderr())
        return result

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def stderr(self) -> str:
        for thread in self._threads:
            thread.join(timeout=2)
        return "".join(self._stderr)

    def _close_pipes(self) -> None:
        for thread in self._threads:
            thread.join(timeout=2)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def finish(self) -> DriverOutput:
        """Close stdin and wait for a clean exit (killing the driver at the deadline)."""
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=max(self.deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            stop_process_group(self.process, grace_s=1.0)
            raise DriverError("driver timed out", self.stderr()) from None
        finally:
            stderr = self.stderr()
            self._close_pipes()
        stdout = "".join(self._stdout)
        results = [
            json.loads(line[len(RESULT_PREFIX) :])
            for line in self._stdout
            if line.startswith(RESULT_PREFIX)
        ]
        if self.process.returncode != 0:
            raise DriverError(f"driver failed with exit {self.process.returncode}", stderr)
        return DriverOutput(self.process.returncode, stdout, stderr, results)

    def kill(self) -> None:
        """Stop the driver (its whole process group) by PID, if still running."""
        if self.process.poll() is None:
            stop_process_group(self.process, grace_s=1.0)
        self._close_pipes()


class RayCluster:
    """A Ray head on host 1 and one worker node per other host of `network`."""

    def __init__(
        self, network: Network, health_check: HealthCheck | None, env: Mapping[str, str]
    ) -> None:
        self.network = network
        self.health_check = health_check
        self.head_host = network.host(1)
        self.address = f"{self.head_host.address}:{GCS_PORT}"
        self.nodes: dict[int, RayNode] = {}
        self._extra_env = dict(env)
        self._launches = 0
        self.start_seconds: float | None = None  # launch of the head to every node alive
        self.ready_seconds: dict[str, float] = {}  # per host: launch to "Ray runtime started"

    @classmethod
    def start(
        cls,
        network: Network,
        health_check: HealthCheck | None = SHORT_HEALTH_CHECK,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 90.0,
    ) -> RayCluster:
        """Start head and workers; return once the GCS sees every host's node alive.

        `health_check=None` keeps Ray's default node health check (no RAY_health_check_*).
        """
        cluster = cls(network, health_check, env or {})
        began = time.monotonic()
        deadline = began + timeout_s
        try:
            cluster._launch(cluster.head_host)
            cluster._wait_started(cluster.head_host, deadline)
            for host in network.hosts[1:]:
                cluster._launch(host)
            for host in network.hosts[1:]:
                cluster._wait_started(host, deadline)
            cluster.wait_for_nodes(len(network.hosts), max(deadline - time.monotonic(), 1.0))
        except BaseException:
            cluster.stop()
            raise
        cluster.start_seconds = time.monotonic() - began
        return cluster

    def process_env(self) -> dict[str, str]:
        """Environment for Ray processes and drivers: the test's own minus Ray variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_USAGE_STATS_ENABLED="0",
            PYTHONUNBUFFERED="1",
        )
        if self.health_check is not None:
            env.update(self.health_check.env())
        env.update(self._extra_env)
        return env

    def _launch(self, host: Host) -> None:
        temp_dir = host.home / "ray"  # short on purpose: unix socket paths must fit 107 bytes
        self._launches += 1
        log = host.home / f"ray-start-{self._launches}.log"  # a restarted node keeps the old log
        argv = [
            str(ray_executable()),
            "start",
            "--block",
            f"--node-ip-address={host.address}",
            "--num-cpus=1",
            "--object-store-memory=80000000",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            # One custom resource per host, named after it, so tests can pin work to a host.
            f"--resources={json.dumps({host.name: 100})}",
        ]
        if host == self.head_host:
            argv += ["--head", f"--port={GCS_PORT}", "--include-dashboard=false"]
        else:
            argv += [f"--address={self.address}"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                Network.exec_argv(host, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=host.home,
                env=self.process_env(),
                start_new_session=True,
            )
        self.nodes[host.index] = RayNode(host, process, log, temp_dir, time.monotonic())

    def _wait_started(self, host: Host, deadline: float) -> None:
        node = self.nodes[host.index]
        while time.monotonic() < deadline:
            if "Ray runtime started" in node.log.read_text(errors="replace"):
                self.ready_seconds[host.name] = time.monotonic() - node.started_at
                return
            if node.process.poll() is not None:
                raise RuntimeError(f"ray on {host.name} exited early:\n{self.log_tail(host)}")
            time.sleep(0.2)
        raise TimeoutError(f"ray on {host.name} did not start in time:\n{self.log_tail(host)}")

    def log_tail(self, host: Host, lines: int = 30) -> str:
        text = self.nodes[host.index].log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_nodes(self, count: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Block until the GCS reports `count` live nodes; returns the driver's report."""
        output = self.run_driver(
            f"{DRIVERS}.wait_nodes", str(count), str(timeout_s), timeout_s=timeout_s + 30
        )
        return output.result("nodes")

    def driver(
        self,
        script: Path | str,
        *args: str,
        host: Host | None = None,
        cwd: Path | None = None,
        timeout_s: float = 90.0,
    ) -> Driver:
        """Start a driver inside `host` (default: the head's host): `python script args...`
        for a `Path`, `python -m script args...` for a module name (importable from the
        repository root, which is put on the driver's PYTHONPATH)."""
        host = host or self.head_host
        env = self.process_env()
        env.update(RAY_ADDRESS=self.address, PYWEAVER_NODE_IP=host.address)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        target = [str(script)] if isinstance(script, Path) else ["-m", script]
        process = subprocess.Popen(
            Network.exec_argv(host, [sys.executable, *target, *args]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd or host.home,
            env=env,
            start_new_session=True,
        )
        return Driver(process, timeout_s)

    def run_driver(
        self,
        script: Path | str,
        *args: str,
        host: Host | None = None,
        cwd: Path | None = None,
        timeout_s: float = 90.0,
    ) -> DriverOutput:
        """Run a driver to completion; raise `DriverError` with its stderr if it fails."""
        driver = self.driver(script, *args, host=host, cwd=cwd, timeout_s=timeout_s)
        try:
            return driver.finish()
        finally:
            driver.kill()

    @contextlib.contextmanager
    def running_driver(
        self,
        script: Path | str,
        *args: str,
        host: Host | None = None,
        cwd: Path | None = None,
        timeout_s: float = 90.0,
    ) -> Iterator[Driver]:
        """`driver()` as a context manager that always stops the driver by PID."""
        driver = self.driver(script, *args, host=host, cwd=cwd, timeout_s=timeout_s)
        try:
            yield driver
        finally:
            driver.kill()

    def rss_megabytes(self) -> dict[str, float]:
        """Resident memory of everything running in each host's namespace (shared pages
        counted once per process, so an upper bound)."""
        usage: dict[str, float] = {}
        for host in self.network.hosts:
            total_kb = 0
            for pid in netns.pids_in(host.netns):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total_kb += int(line.split()[1])
            usage[host.name] = total_kb / 1024
        return usage

    def stop_node(self, host: Host, grace_s: float = 3.0) -> None:
        """Stop one node: its process group, then anything left in its namespace, by PID."""
        node = self.nodes.pop(host.index, None)
        if node is not None:
            stop_process_group(node.process, grace_s)
        for _ in range(3):
            pids = netns.pids_in(host.netns)
            if not pids:
                break
            netns.kill_pids(pids)
            time.sleep(0.2)

    def restart_node(self, host: Host, timeout_s: float = 60.0) -> None:
        """Stop a worker node and start a fresh one on the same host (after a partition)."""
        if host == self.head_host:
            raise ValueError("restarting the head would lose the cluster")
        self.stop_node(host)
        deadline = time.monotonic() + timeout_s
        self._launch(host)
        self._wait_started(host, deadline)

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop every node: SIGTERM all process groups at once, one shared grace period,
        then SIGKILL the groups and anything left in the hosts' namespaces, by PID."""
        for node in self.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for node in self.nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        for host in reversed(self.network.hosts):
            self.stop_node(host, grace_s=0.0)

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
