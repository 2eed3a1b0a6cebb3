"""Running ``pyweaver ray deploy`` inside a netns host, and talking to what it deployed.

The deploy command and the HTTP client run inside a host's namespace (only there are
the hosts' addresses reachable); the test process reads the deployment's status through
its status endpoint (a Unix socket: the filesystem is shared) and the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._status import STATUS, fetch
from tests.cluster import netns
from tests.cluster.netns import Host, Network
from tests.cluster.ray_cluster import REPO_ROOT, Driver, stop_process_group

FACTORS = REPO_ROOT / "examples" / "factors"


def factors_app(directory: Path, ray_section: str) -> Path:
    """A copy of examples/factors with ``ray_section`` appended to its weaver.toml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text((FACTORS / "app.py").read_text())
    text = (FACTORS / "weaver.toml").read_text()
    (directory / "weaver.toml").write_text(text + "\n" + ray_section)
    return directory / "weaver.toml"


def factors_of(x: int) -> str:
    return " ".join(str(d) for d in range(1, x + 1) if x % d == 0)


class Deploy:
    """A ``pyweaver ray deploy`` process inside ``host``."""

    def __init__(
        self,
        host: Host,
        config: Path,
        data_dir: Path,
        *,
        address: str | None = None,
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
        log_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.data_dir = data_dir
        self.log = (log_dir or config.parent) / f"deploy-{time.monotonic_ns()}.log"
        argv = [sys.executable, "-m", "pyweaver", "ray", "deploy", str(config)]
        argv += ["--node-ip-address", host.address, *extra]
        if address:
            argv += ["--address", address]
        base = env if env is not None else dict(os.environ)
        base = {k: v for k, v in base.items() if k != "RAY_ADDRESS"}
        self.env = {
            **base,
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYWEAVER_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
            # A local Ray would otherwise enable token auth and write ~/.ray/auth_token,
            # which every other Ray on the machine (other tests' clusters) then trips on.
            "RAY_AUTH_MODE": base.get("RAY_AUTH_MODE", "disabled"),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                Network.exec_argv(host, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=config.parent,
                start_new_session=True,
            )
        self.deployment_id = ""
        self.listeners: dict[str, str] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.output()
            if "pyweaver ray: ready" in text:
                self.deployment_id = re.findall(r"deployment (\S+)$", text, re.M)[0]
                self.listeners = dict(re.findall(r"listener (\S+) at (\S+)", text))
                return
            if self.process.poll() is not None:
                raise AssertionError(f"deploy exited {self.process.returncode}:\n{text[-5000:]}")
            time.sleep(0.3)
        raise AssertionError(f"deploy not ready in {timeout_s} s:\n{self.output()[-5000:]}")

    def status(self) -> dict[str, Any]:
        entry = Registry(self.data_dir).get(self.deployment_id, "ray")
        report: dict[str, Any] = anyio.run(
            lambda: fetch(entry.status_address, entry.id, STATUS, timeout=20.0)
        )
        return report

    def replicas(self, group: str) -> list[dict[str, Any]]:
        for found in self.status()["groups"]:
            if found["name"] == group:
                return list(found["replicas"])
        raise AssertionError(f"no group {group}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (as Ctrl-C would), wait; SIGKILL the group if it hangs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process_group(self.process, grace_s=1.0)
            raise AssertionError(f"deploy did not stop:\n{self.output()[-3000:]}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            stop_process_group(self.process, grace_s=3.0)


def http_client(host: Host, timeout_s: float = 300.0) -> Driver:
    """The HTTP client driver (``tests.ray.http_client``) inside ``host``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        Network.exec_argv(host, [sys.executable, "-m", "tests.ray.http_client"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    return Driver(process, timeout_s)


def tls_probe(host: Host, address: str) -> dict[str, Any]:
    """What a client that is no part of the deployment gets at ``address`` (a
    weavelet's data address), probed from inside ``host`` (``tests.ray.tls_probe``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        Network.exec_argv(host, [sys.executable, "-m", "tests.ray.tls_probe", address]),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ask(client: Driver, address: str, xs: list[int], until_ok: float = 0.0) -> dict[str, Any]:
    client.send({"address": address, "xs": xs, "until_ok": until_ok})
    return client.expect("answers")


def pyweaver_processes(host: Host) -> list[str]:
    """Command lines of the app's and pyweaver's processes left inside ``host``."""
    found = []
    for pid in netns.pids_in(host.netns):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if any(word in cmdline for word in ("app.py", "Replica", "ManagerActor", "pyweaver")):
                found.append(f"{pid}: {cmdline}")
    return found
