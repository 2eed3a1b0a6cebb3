"""``[kube]``: defaults, overrides per group and listener, and errors naming the key."""

from __future__ import annotations

import pytest

from pyweaver._errors import ConfigError
from pyweaver.contract import parse_config
from pyweaver.deployers.kube import AppInfo, parse_kube, plan


def kube(text: str):  # type: ignore[no-untyped-def]
    return parse_kube(parse_config(text, path="w.toml").deployers.get("kube", {}), file="w.toml")


def test_defaults() -> None:
    config = kube("")
    assert config.namespace == "default" and config.service_type == "LoadBalancer"
    group = config.group("main")
    assert (group.replicas, group.max_replicas, group.cpu_utilization) == (1, 10, 80)
    assert group.resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert config.listener("hello", 1).port == 20001


def test_group_and_listener_overrides() -> None:
    config = kube(
        """
[kube]
replicas = 2
resources = {requests = {cpu = "1"}}
probes = {period = 3}
[kube.groups."app.Cache"]
replicas = 4
max_replicas = 8
[kube.listeners.web]
port = 8080
service_type = "ClusterIP"
"""
    )
    assert config.group("main").replicas == 2
    assert config.group("main").resources == {"requests": {"cpu": "1"}}
    cache = config.group("app.Cache")
    assert (cache.replicas, cache.max_replicas) == (4, 8)
    web = config.listener("web", 0)
    assert (web.port, web.service_port, web.service_type) == (8080, 80, "ClusterIP")
    assert config.probes.period == 3 and config.probes.failure_threshold == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[kube]\nimgae = 'x'", "[kube] 'imgae': unknown key; did you mean 'image'?"),
        ("[kube]\nreplicas = 0", "[kube] replicas: expected a whole number of at least 1"),
        ("[kube]\nservice_type = 'Ingress'", "[kube] service_type: expected one of"),
        ("[kube]\ndata_port = 70000", "[kube] data_port: expected a port number"),
        ("[kube]\nprobes = {perod = 1}", "[kube] probes 'perod': unknown key"),
    ],
)
def test_mistakes_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"w\.toml") as caught:
        kube(text)
    assert message in str(caught.value)


def test_group_mistakes_are_found_against_the_app() -> None:
    text = '[serviceweaver]\nbinary = "app.py"\n[kube.groups."app.Nope"]\nreplicas = 2\n'
    config = parse_config(text, path="w.toml")
    with pytest.raises(ConfigError, match=r'\[kube\.groups\."app\.Nope"\] names no group'):
        plan(config, text, kube(text), AppInfo(components=["app.A"]))
    bad = "[kube.groups.main]\nreplicas = 3\nmax_replicas = 2\n"
    with pytest.raises(ConfigError, match="max_replicas: 2 is less than replicas"):
        kube(bad).group("main")
