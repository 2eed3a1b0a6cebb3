"""Every generated pod's entrypoint run as a local process: the "kubelet" here is this
test. The ConfigMap's files are written to a directory, the headless Services' DNS
names are mapped to loopback ports by the fake resolver (``PYWEAVER_KUBE_RESOLVE_FILE``),
and each pod binds its own ports on 127.0.0.1. The pods must find each other, route,
serve the listener, and survive losing a replica of a group.

mTLS is on by default: each pod gets its group's Secret from ``secret.yaml`` written to
a directory of its own (``PYWEAVER_KUBE_TLS_DIR``, what the kubelet's Secret mount
would be), and a plain client to a pod's data port is refused.

What this does not cover (needs a real cluster): the image, the kubelet, probes being
acted on, kube-dns answering the headless names, Services and the HPA.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyweaver.contract import parse_config
from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers.kube import AppInfo, manifests, parse_kube, plan
from pyweaver.deployers.kube._manifests import secrets
from tests.ray.tls_probe import probe

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow

FACTORS = EXAMPLES / "factors"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Pod:
    def __init__(
        self,
        name: str,
        group: str,
        config_dir: Path,
        resolve: Path,
        log_dir: Path,
        tls_dir: Path | None,
    ) -> None:
        self.name = name
        self.group = group
        self.data_port = free_port()
        self.health_port = free_port()
        self.log = (log_dir / f"{name}.log").open("w")
        env = {
            **os.environ,
            "PYWEAVER_KUBE_GROUP": group,
            "PYWEAVER_KUBE_BIND_HOST": "127.0.0.1",
            "PYWEAVER_KUBE_DATA_PORT": str(self.data_port),
            "PYWEAVER_KUBE_HEALTH_PORT": str(self.health_port),
            "PYWEAVER_KUBE_RESOLVE_FILE": str(resolve),
            "POD_NAME": name,
        }
        if tls_dir is not None:
            env["PYWEAVER_KUBE_TLS_DIR"] = str(tls_dir)
        env.pop("PYWEAVER_CONFIG", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyweaver.deployers.kube",
                "--config-dir",
                str(config_dir),
                "--app-dir",
                str(FACTORS),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.data_port}"

    def healthy(self) -> bool:
        return get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=3)[0] == 200

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the pod and its app process
            status = self.process.wait(timeout=10)
        self.log.close()
        return status


@pytest.fixture(params=[True, False], ids=["mtls", "plain"])
def mtls(request: pytest.FixtureRequest) -> bool:
    on: bool = request.param
    return on


@pytest.fixture
def pods(tmp_path: Path, mtls: bool) -> Iterator[tuple[list[Pod], Path, int]]:
    listener_port = free_port()
    text = (FACTORS / "weaver.toml").read_text() + (
        f"\n[kube]\nmtls = {str(mtls).lower()}\n[kube.listeners.factors]\nport = {listener_port}\n"
    )
    config = parse_config(text, path=str(FACTORS / "weaver.toml"))
    app = AppInfo(components=["app.Factorer"], routed=["app.Factorer"])
    deployment = plan(config, text, parse_kube(config.deployers["kube"]), app)
    config_dir = tmp_path / "configmap"
    config_dir.mkdir()
    config_map = manifests(deployment)[0]
    for file, content in config_map["data"].items():  # what the kubelet mounts
        (config_dir / file).write_text(content)
    tls_dirs: dict[str, Path] = {}
    if mtls:
        by_name = {
            s["metadata"]["name"]: s
            for s in secrets(deployment, DeploymentCA.create(deployment.deployment_id))
        }
        for planned in deployment.groups:  # each group's pods mount only their Secret
            directory = tls_dirs[planned.name] = tmp_path / f"tls-{planned.resource}"
            directory.mkdir(mode=0o700)
            for file, data in by_name[deployment.secret_name(planned)]["data"].items():
                (directory / file).write_bytes(base64.b64decode(data))
                (directory / file).chmod(0o400)
    resolve = tmp_path / "resolve.json"
    started: list[Pod] = []
    try:
        for name, group in [
            ("main-0", "main"),
            ("factorer-0", "app.Factorer"),
            ("factorer-1", "app.Factorer"),
        ]:
            started.append(Pod(name, group, config_dir, resolve, tmp_path, tls_dirs.get(group)))
        services = {g.name: deployment.service_dns(g) for g in deployment.groups}
        table = {services[g]: [p.endpoint for p in started if p.group == g] for g in services}
        resolve.write_text(json.dumps(table))
        yield started, resolve, listener_port
    finally:
        for pod in started:
            pod.stop()


def test_pods_find_each_other_serve_and_survive_a_lost_replica(
    pods: tuple[list[Pod], Path, int], tmp_path: Path, mtls: bool
) -> None:
    started, resolve, listener_port = pods
    for pod in started:
        wait_for(pod.healthy, f"pod {pod.name} to be ready")
    url = f"http://127.0.0.1:{listener_port}/?x="
    assert get(url + "12") == (200, "1 2 3 4 6 12\n")
    # A client that is no pod of the deployment, at a Factorer pod's data port.
    found = probe(started[1].endpoint)
    if mtls:
        # Only TLS is spoken there, and without a certificate of the deployment the
        # connection is refused: plain bytes get nothing or a TLS alert (0x15) back.
        assert found["plain"] == "" or found["plain"].startswith("15"), found
        assert found["tls_speaks"], found
        assert found["server_identity"].endswith("/group/app.Factorer"), found
        assert found["no_cert_read"].startswith("refused"), found
    else:
        assert not found["tls_speaks"], found
    for x in range(20, 30):
        status, body = get(url + str(x))
        assert status == 200 and body.split()[-1] == str(x)
    # A Factorer pod dies; its Service's DNS name stops listing it.
    lost = started[2]
    assert lost.stop(signal.SIGKILL) == -signal.SIGKILL
    table = json.loads(resolve.read_text())
    for name, endpoints in table.items():
        table[name] = [e for e in endpoints if e != lost.endpoint]
    resolve.write_text(json.dumps(table))

    def group_gone() -> bool:
        try:
            os.killpg(lost.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    # Its app process notices the pod's entrypoint is gone and ends too.
    wait_for(group_gone, "the killed pod's app process to end", timeout=30)
    # Keys the lost pod owned go to the survivor (after the balancer's grace).
    for x in range(20, 30):
        status, body = get(url + str(x), timeout=30)
        assert status == 200, body
    main = started[0]
    assert main.stop() == 0
    log = (tmp_path / "main-0.log").read_text()
    assert "factors listener available" in log
