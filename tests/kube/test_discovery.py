"""Discovery: DNS and the fake resolver, routing made from addresses alone, and a pod's
deployer answering activations and pushing changes (against a fake resolver)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from pyweaver.contract import Assignment, parse_config
from pyweaver.contract import messages as m
from pyweaver.deployers.kube import DnsResolver, FileResolver, PodConfig, PodDeployer
from pyweaver.deployers.kube._discovery import routing_info
from pyweaver.deployers.kube._plan import PodGroup, PodListener

pytestmark = pytest.mark.anyio


async def test_dns_resolver_finds_loopback_and_nothing_for_unknown_names() -> None:
    resolver = DnsResolver()
    assert "127.0.0.1:10000" in await resolver.resolve("localhost", 10000)
    assert await resolver.resolve("no-such-service.pyweaver.invalid", 10000) == []


async def test_file_resolver_rereads_its_file(tmp_path: Path) -> None:
    table = tmp_path / "resolve.json"
    resolver = FileResolver(table)
    assert await resolver.resolve("a.svc", 1) == []  # no file yet
    table.write_text(json.dumps({"a.svc": ["127.0.0.1:7002", "127.0.0.1:7001"]}))
    assert await resolver.resolve("a.svc", 1) == ["127.0.0.1:7001", "127.0.0.1:7002"]
    table.write_text(json.dumps({"a.svc": ["127.0.0.1:7001"]}))
    assert await resolver.resolve("a.svc", 1) == ["127.0.0.1:7001"]


def test_routing_is_the_same_for_every_pod_that_sees_the_same_replicas() -> None:
    one = routing_info(
        "g", ["app.A"], 1, ["10.0.0.3:10000", "10.0.0.1:10000", "10.0.0.2:10000"], routed=True
    )
    two = routing_info(
        "g", ["app.A"], 7, ["10.0.0.2:10000", "10.0.0.3:10000", "10.0.0.1:10000"], routed=True
    )
    assert (
        one.replicas
        == two.replicas
        == {a: f"tcp://{a}" for a in ["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.3:10000"]}
    )
    assert one.assignment == two.assignment
    assert one.assignment is not None
    assignment = Assignment.from_wire(one.assignment)
    owners = {assignment.pick(key) for key in range(1, 2**64, 2**58)}
    assert owners == set(one.replicas)
    assert routing_info("g", ["app.A"], 1, ["10.0.0.1:10000"], routed=False).assignment is None


POD = PodConfig(
    app="shop",
    version="v1",
    deployment_id="shop-v1",
    namespace="default",
    app_dir="/app",
    data_port=10000,
    health_port=10001,
    discovery_interval=0.05,
    groups={
        "main": PodGroup(components=["main"], routed=False, service="shop-main.svc"),
        "app.Cache": PodGroup(components=["app.Cache"], routed=True, service="shop-cache.svc"),
    },
    listeners={"web": PodListener(group="main", port=8080)},
)


class FakeResolver:
    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}
        self.asked: list[tuple[str, int]] = []

    async def resolve(self, name: str, port: int) -> list[str]:
        self.asked.append((name, port))
        return sorted(self.table.get(name, []))


class FakeEnvelope:
    def __init__(self) -> None:
        self.pushed: list[m.RoutingInfo] = []

    async def update_routing(self, info: m.RoutingInfo) -> None:
        self.pushed.append(info)


async def test_activation_discovers_the_group_and_changes_are_pushed() -> None:
    resolver = FakeResolver()
    resolver.table["shop-cache.svc"] = ["10.0.0.2:10000", "10.0.0.1:10000"]
    deployer = PodDeployer(POD, "main", parse_config(""), resolver=resolver, replica_id="main-0")
    envelope = FakeEnvelope()
    async with anyio.create_task_group() as tasks:
        deployer._tasks = tasks
        deployer.envelope = envelope  # type: ignore[assignment]
        request = m.ActivateComponent(component="app.Cache")
        info = await deployer.activate_component(envelope, request)  # type: ignore[arg-type]
        assert info.group == "app.Cache"
        assert sorted(info.replicas) == ["10.0.0.1:10000", "10.0.0.2:10000"]
        assert info.assignment is not None  # a routed group
        assert resolver.asked[0] == ("shop-cache.svc", 10000)
        # A pod of the group goes away: the weavelet is told, with a newer version.
        resolver.table["shop-cache.svc"] = ["10.0.0.2:10000"]
        with anyio.fail_after(5):
            while not envelope.pushed:
                await anyio.sleep(0.01)
        pushed = envelope.pushed[-1]
        assert list(pushed.replicas) == ["10.0.0.2:10000"]
        assert pushed.version > info.version
        tasks.cancel_scope.cancel()


async def test_unknown_components_and_listeners() -> None:
    deployer = PodDeployer(
        POD,
        "main",
        parse_config(""),
        resolver=FakeResolver(),
        bind_host="127.0.0.1",
        log=lambda line: None,
    )
    info = await deployer.activate_component(None, m.ActivateComponent(component="app.Gone"))  # type: ignore[arg-type]
    assert "not in this deployment's kube.json" in info.error
    known = await deployer.get_listener_address(None, m.ListenerAddressRequest(name="web"))  # type: ignore[arg-type]
    assert known.address == "127.0.0.1:8080"
    unknown = await deployer.get_listener_address(None, m.ListenerAddressRequest(name="other"))  # type: ignore[arg-type]
    assert unknown.address == "127.0.0.1:0"
    with pytest.raises(Exception, match="no group of the app"):
        PodDeployer(POD, "app.Nope", parse_config(""))
