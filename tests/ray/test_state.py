"""The Ray deployer's plain-data parts, without Ray: ``[ray]`` parsing and the
manager's state (routing, leases, listener backends, telemetry buffer)."""

from __future__ import annotations

import pytest

from pyweaver._errors import ConfigError
from pyweaver.contract._routing import Assignment
from pyweaver.deployers.ray import ManagerState, parse_ray


def test_ray_section_defaults_and_per_group_settings() -> None:
    config = parse_ray(
        {
            "replicas": 3,
            "cpus": 0.5,
            "listeners": {"web": {"address": "0.0.0.0:8080"}},
            "groups": {"app.Cache": {"replicas": 1, "resources": {"h2": 1}}},
        }
    )
    assert config.namespace == "pyweaver"
    assert config.listeners == {"web": "0.0.0.0:8080"}
    cache = config.group("app.Cache", is_main=False)
    assert (cache.replicas, cache.cpus, cache.resources) == (1, 0.5, {"h2": 1.0})
    assert config.group("app.Other", is_main=False).replicas == 3
    assert config.group("main", is_main=True).replicas == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"replica": 2}, "did you mean 'replicas'"),
        ({"cpus": 0}, "at least 0.1 .*node affinity"),
        ({"groups": {"g": {"cpu": 1}}}, r'\[ray.groups."g"\] unknown key'),
        ({"runtime_env": {"working_dir": "/x"}}, "set by pyweaver"),
        ({"listeners": {"web": "1.2.3.4:5"}}, "must be {address"),
    ],
)
def test_ray_section_mistakes_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ray(raw, file="w.toml")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(clock: Clock) -> ManagerState:
    return ManagerState(
        deployment_id="d1",
        app="shop",
        groups={"main": ["main"], "app.Cache": ["app.Cache"]},
        replicas={"main": 1, "app.Cache": 2},
        routed=["app.Cache"],
        lease=5.0,
        clock=clock,
    )


def test_routing_follows_registrations_with_a_fixed_slot_assignment() -> None:
    clock = Clock()
    manager = state(clock)
    empty = manager.routing("app.Cache")
    assert empty["replicas"] == {}
    assert empty["assignment"] == Assignment.build(["app.Cache#0", "app.Cache#1"]).to_wire()
    assert manager.routing("main")["assignment"] is None
    manager.register("app.Cache#0", {"data_address": "tcp://10.0.0.2:7000"})
    first = manager.routing("app.Cache")
    assert first["replicas"] == {"app.Cache#0": "tcp://10.0.0.2:7000"}
    assert first["version"] > empty["version"]
    # Ray restarts the replica elsewhere: same slot, new address, same keys.
    assert manager.register("app.Cache#0", {"data_address": "tcp://10.0.0.3:7100"}) == 2
    moved = manager.routing("app.Cache")
    assert moved["replicas"] == {"app.Cache#0": "tcp://10.0.0.3:7100"}
    assert moved["assignment"] == first["assignment"]
    assert moved["version"] > first["version"]
    with pytest.raises(KeyError):
        manager.register("app.Cache#2", {"data_address": "tcp://x:1"})


def test_a_replica_that_stops_renewing_is_dropped_and_must_register_again() -> None:
    clock = Clock()
    manager = state(clock)
    first = manager.register("app.Cache#0", {"data_address": "tcp://a:1"})
    manager.register("app.Cache#1", {"data_address": "tcp://b:1"})
    clock.now = 4.0
    assert manager.renew("app.Cache#1", 1)
    version = manager.routing("app.Cache")["version"]
    clock.now = 7.0
    assert manager.expire() == ["app.Cache#0"]
    after = manager.routing("app.Cache")
    assert list(after["replicas"]) == ["app.Cache#1"] and after["version"] > version
    assert not manager.renew("app.Cache#0", first)  # told to register again
    assert manager.snapshot()["groups"][1]["replicas"][0]["state"] == "restarting"


def test_listener_backends_and_proxy_addresses() -> None:
    manager = state(Clock())
    manager.proxies = {"web": "10.0.0.1:8080"}
    manager.register("main#0", {"data_address": "tcp://a:1"})
    assert manager.export_listener("main#0", "web", "10.0.0.2:4000") == "10.0.0.1:8080"
    assert manager.backends() == {"web": ["10.0.0.2:4000"]}
    manager.failed("main#0", "boom")
    assert manager.backends() == {}
    assert manager.snapshot()["groups"][0]["replicas"][0]["state"] == "failed"


def test_telemetry_is_drained_in_order_and_bounded_per_call() -> None:
    manager = state(Clock())
    manager.push([{"n": i} for i in range(3)], [{"span": 1}])
    manager.push([{"n": 3}], [])
    batch = manager.drain(0, limit=2)
    assert batch["logs"] == [{"n": 0}, {"n": 1}] and batch["spans"] == []
    rest = manager.drain(batch["next"])
    assert rest["logs"] == [{"n": 2}, {"n": 3}] and rest["spans"] == [{"span": 1}]
    assert manager.drain(rest["next"])["logs"] == []


def test_main_exit_ends_the_deployment_once() -> None:
    clock = Clock()
    manager = state(clock)
    manager.register("main#0", {"data_address": "tcp://10.0.0.1:1"})
    before = manager.snapshot()
    assert before["main_status"] is None
    manager.main_exited("main#0", 3)
    after = manager.snapshot()
    assert after["main_status"] == 3
    assert after["epoch"] > before["epoch"]  # wakes the deploying process's long-poll
    manager.main_exited("main#0", 0)  # a later report does not replace the first
    assert manager.snapshot()["main_status"] == 3
    with pytest.raises(KeyError):
        manager.main_exited("nope#0", 1)
