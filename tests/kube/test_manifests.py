"""The manifests: golden files, determinism, and the shape of what pods need.

Regenerate the goldens with ``PYWEAVER_REGENERATE_GOLDEN=1 pytest tests/kube``.
"""

from __future__ import annotations

import os

import pytest
import yaml

from pyweaver.deployers.kube import AppInfo, PodConfig, dockerfile, manifests, render_yaml

from .conftest import GOLDEN, KUBE_EXAMPLES, REGENERATE_ENV, example_plan


@pytest.mark.parametrize("name", KUBE_EXAMPLES)
def test_manifests_match_the_golden_files(name: str, app_infos: dict[str, AppInfo]) -> None:
    deployment = example_plan(name, app_infos[name])
    outputs = {
        f"{name}.kube.yaml": render_yaml(deployment, manifests(deployment)),
        f"{name}.Dockerfile": dockerfile(deployment),
    }
    for file, text in outputs.items():
        path = GOLDEN / file
        if os.environ.get(REGENERATE_ENV) == "1":
            path.write_text(text, encoding="utf-8")
        assert path.read_text(encoding="utf-8") == text, (
            f"{file} differs from the golden file; if the change is intended, rerun with "
            f"{REGENERATE_ENV}=1"
        )


def test_the_same_inputs_give_the_same_bytes_and_a_change_gives_a_new_version(
    app_infos: dict[str, AppInfo],
) -> None:
    one = example_plan("factors", app_infos["factors"])
    two = example_plan("factors", app_infos["factors"])
    assert render_yaml(one, manifests(one)) == render_yaml(two, manifests(two))
    changed = AppInfo(components=[*app_infos["factors"].components, "app.New"])
    three = example_plan("factors", changed)
    assert three.version != one.version
    assert all(three.version in g.resource for g in three.groups)


def test_one_deployment_hpa_and_headless_service_per_group(app_infos: dict[str, AppInfo]) -> None:
    deployment = example_plan("collatz", app_infos["collatz"])
    objects = manifests(deployment)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    # collatz colocates Odd and Even: two groups (app.Odd with Even, and main).
    assert [g.name for g in deployment.groups] == ["app.Odd", "main"]
    assert deployment.groups[0].components == ["app.Odd", "app.Even"]
    for group in deployment.groups:
        for kind in ("Deployment", "HorizontalPodAutoscaler", "Service"):
            assert (kind, group.resource) in kinds
    headless = [
        o for o in objects if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"
    ]
    assert len(headless) == 2
    listener = [o for o in objects if o["kind"] == "Service" and o["spec"].get("type")]
    assert [o["spec"]["type"] for o in listener] == ["LoadBalancer"]


def test_the_config_map_carries_weaver_toml_and_what_pods_read(
    app_infos: dict[str, AppInfo],
) -> None:
    deployment = example_plan("factors", app_infos["factors"])
    config_map = manifests(deployment)[0]
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"]["weaver.toml"] == deployment.config_text
    pod = PodConfig.from_json(config_map["data"]["kube.json"])
    assert pod.deployment_id == f"factors-{deployment.version}"
    assert pod.groups["app.Factorer"].routed is True
    assert pod.groups["main"].routed is False
    assert pod.listeners["factors"].group == "main"
    assert pod.group_of("app.Factorer") == "app.Factorer"


def test_the_yaml_is_plain_documents_without_anchors(app_infos: dict[str, AppInfo]) -> None:
    deployment = example_plan("factors", app_infos["factors"])
    text = render_yaml(deployment, manifests(deployment))
    assert "&id" not in text and "*id" not in text
    assert list(yaml.safe_load_all(text)) == manifests(deployment)


def test_service_type_and_ports_come_from_the_kube_section() -> None:
    from pyweaver.contract import parse_config
    from pyweaver.deployers.kube import parse_kube, plan

    text = """
[serviceweaver]
binary = "app.py"
[kube]
namespace = "shop"
image = "registry.example/shop:1"
[kube.listeners.web]
port = 8080
service_port = 443
service_type = "NodePort"
[kube.groups.main]
replicas = 3
"""
    config = parse_config(text)
    deployment = plan(
        config,
        text,
        parse_kube(config.deployers["kube"]),
        AppInfo(components=["app.Web"], listeners={"web": "app.Web"}),
    )
    objects = manifests(deployment)
    service = next(o for o in objects if o["kind"] == "Service" and o["spec"].get("type"))
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["port"] == 443
    assert service["metadata"]["namespace"] == "shop"
    # The listener is declared by app.Web: its Service selects app.Web's pods.
    web = next(g for g in deployment.groups if g.name == "app.Web")
    assert service["spec"]["selector"]["pyweaver.dev/group"] == web.resource
    web_deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == web.resource
    )
    container = web_deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/shop:1"
    assert {"name": "web", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    main = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != web.resource
    )
    assert main["spec"]["replicas"] == 3
