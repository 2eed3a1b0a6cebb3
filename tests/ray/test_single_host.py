"""``pyweaver ray deploy`` with no address: a local Ray, started and stopped by pyweaver.

Runs inside one netns host (Ray binds every interface; in a namespace it cannot reach
anything else on the machine). The factors example as it is in ``examples/factors``:
deploy, call through its proxy, the same dashboard as ``multi`` (listing, replicas,
methods, traces), stop: nothing is left running in the host afterwards. mTLS is on by
default on Ray: the replicas call each other over mutual TLS, and a client that is no
part of the deployment is refused at a replica's data address. And an app
whose main returns: the deployment ends with main's exit status, as in ``multi``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pyweaver.deployers.multi._dashboard import dashboard_app
from tests.cluster import netns, ray_cluster
from tests.cluster.netns import Network
from tests.ray.harness import (
    FACTORS,
    Deploy,
    ask,
    factors_of,
    http_client,
    pyweaver_processes,
    tls_probe,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def network() -> Iterator[Network]:
    reason = ray_cluster.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    netns.cleanup_leftovers()
    with Network.create(1) as created:
        yield created


def dashboard_get(data_dir: Path, path: str) -> Any:
    async def get() -> Any:
        transport = httpx.ASGITransport(app=dashboard_app(data_dir))
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            response = await client.get(path)
            assert response.status_code == 200, response.text
            return response.json()

    return anyio.run(get)


def test_factors_example_through_its_proxy_and_the_dashboard(
    network: Network, tmp_path: Path
) -> None:
    host = network.host(1)
    data = tmp_path / "data"
    began = time.monotonic()
    # examples/factors/weaver.toml as it is: [ray]'s defaults (2 Factorer replicas, the
    # listener's proxy on 0.0.0.0, a free port), every trace recorded.
    deploy = Deploy(host, FACTORS / "weaver.toml", data, extra=("--trace", "1"), log_dir=tmp_path)
    client = http_client(host)
    try:
        deploy.wait_ready()
        print(f"\n[ray single host] deploy ready in {time.monotonic() - began:.1f} s")
        address = deploy.listeners["factors"].replace("0.0.0.0", host.address)
        answers = ask(client, address, [12, 30, 97], until_ok=10)
        assert answers["answers"] == [factors_of(12), factors_of(30), factors_of(97)]
        status = deploy.status()
        groups = {group["name"]: group for group in status["groups"]}
        assert set(groups) == {"main", "app.Factorer"}
        factorers = groups["app.Factorer"]["replicas"]
        assert [r["slot"] for r in factorers] == ["app.Factorer#0", "app.Factorer#1"]
        assert all(r["status"] == "healthy" and r["health"]["healthy"] for r in factorers)
        assert all(r["node_ip"] == host.address for r in factorers)
        assert all(r["usage"]["rss_bytes"] > 0 for r in factorers)
        assert len({r["pid"] for r in factorers}) == 2

        # mTLS (the default): main reached the Factorers over TLS (answers above); a
        # client without the deployment's certificate gets nothing from their port.
        found = tls_probe(host, factorers[0]["address"])
        assert found["plain"] == "" or found["plain"].startswith("15"), found
        assert found["tls_speaks"], found
        assert found["server_identity"].endswith("/group/app.Factorer"), found
        assert found["no_cert_read"].startswith("refused"), found

        # The dashboard multi has lists the Ray deployment, with its replicas...
        listed = dashboard_get(data, "/api/deployments")
        [mine] = [e for e in listed if e["deployment"]["id"] == deploy.deployment_id]
        assert mine["deployment"]["deployer"] == "ray" and not mine["error"]
        assert (mine["groups"], mine["replicas"], mine["healthy"]) == (2, 3, 3)
        assert mine["listeners"][0]["proxy"] == deploy.listeners["factors"]
        # ... and its page: methods per component and per replica, traces from the
        # replicas (drained through the manager into traces.jsonl).
        page: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = dashboard_get(data, f"/api/deployment/{deploy.deployment_id}")
            if page["traces"]["items"]:
                break
            time.sleep(0.5)
        assert page["traces"]["items"], "no trace reached the dashboard"
        rows = {(r["component"], r["method"]): r for r in page["methods"]["by_component"]}
        assert rows[("app.Factorer", "factors")]["total"]["calls"] >= 3
        replicas = {r["replica"] for r in page["methods"]["by_replica"]}
        assert len(replicas) >= 1 and all("@" + host.address in r for r in replicas if r)
        commands = {c["what"]: c["command"] for c in page["commands"]}
        assert commands["stop"] == f"pyweaver ray stop {deploy.deployment_id}"

        assert deploy.stop() == 128 + 15
        assert "pyweaver ray: stopped" in deploy.output()
    finally:
        client.kill()
        deploy.kill()
    # The local Ray went with the command, and every replica and weavelet with it.
    assert netns.pids_in(host.netns) == [], pyweaver_processes(host)
    logs = list((data / "logs").glob("*/log*.jsonl"))
    assert logs and "factors listener available" in logs[0].read_text()
    assert not list(FACTORS.glob("deploy-*.log"))


RETURNING_APP = '''\
"""main calls a component in another group, logs the answer and exits with status 3."""
from typing import Protocol

import anyio

import pyweaver as weaver


class Echo(Protocol):
    async def echo(self, s: str) -> str: ...


class EchoImpl(weaver.Implements[Echo]):
    async def echo(self, s: str) -> str:
        return s


async def main() -> None:
    root = await weaver.init()
    echo = await weaver.get(Echo, root)
    root.logger.info("main got an answer", answer=await echo.echo("hi"))
    raise SystemExit(3)


if __name__ == "__main__":
    anyio.run(main)
'''


def test_main_returning_ends_the_deployment_with_its_status(
    network: Network, tmp_path: Path
) -> None:
    host = network.host(1)
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(RETURNING_APP)
    # With mTLS off (the default is on): main's call to Echo goes over plain TCP.
    (app / "weaver.toml").write_text(
        '[serviceweaver]\nname = "returning"\nbinary = "app.py"\n[ray]\nreplicas = 1\n'
        "mtls = false\n"
    )
    deploy = Deploy(host, app / "weaver.toml", tmp_path / "data", log_dir=tmp_path)
    try:
        # Before: Ray restarted main's replica forever and deploy never ended.
        assert deploy.process.wait(timeout=240) == 3, deploy.output()[-3000:]
    finally:
        deploy.kill()
    output = deploy.output()
    assert "pyweaver ray: main exited (3)" in output
    assert "main got an answer" in output and "answer=hi" in output.replace('"', "")
    assert netns.pids_in(host.netns) == [], pyweaver_processes(host)
