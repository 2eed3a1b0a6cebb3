"""The manifests against the Kubernetes OpenAPI schemas of several versions
(``kubernetes-validate``, offline, strict: unknown fields are errors), and pyweaver's
own lint for what schemas miss."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers.kube import AppInfo, manifests
from pyweaver.deployers.kube._lint import lint
from pyweaver.deployers.kube._manifests import secrets

from .conftest import KUBE_EXAMPLES, example_plan

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES_VERSIONS = ("1.27.0", "1.30.0", "1.33.0", "1.37.0")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUBE_EXAMPLES)
def test_every_object_is_valid_for_the_version(
    name: str, version: str, app_infos: dict[str, AppInfo]
) -> None:
    for obj in everything(name, app_infos):
        kubernetes_validate.validate(obj, version, strict=True)


def everything(name: str, app_infos: dict[str, AppInfo]) -> list[dict[str, Any]]:
    """kube.yaml's objects, then secret.yaml's (mTLS is on by default)."""
    deployment = example_plan(name, app_infos[name])
    assert deployment.mtls
    return [*manifests(deployment), *secrets(deployment, DeploymentCA.create("test"))]


def test_the_validator_does_refuse_a_wrong_object(app_infos: dict[str, AppInfo]) -> None:
    deployment = next(
        o
        for o in manifests(example_plan("factors", app_infos["factors"]))
        if o["kind"] == "Deployment"
    )
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "10000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, "1.30.0", strict=True)


@pytest.mark.parametrize("name", KUBE_EXAMPLES)
def test_the_generated_objects_pass_the_lint(name: str, app_infos: dict[str, AppInfo]) -> None:
    objects = everything(name, app_infos)
    assert [o["kind"] for o in objects].count("Secret") == len(
        example_plan(name, app_infos[name]).groups
    )
    assert lint(objects) == []


def test_kube_yaml_alone_has_unresolved_secret_references(app_infos: dict[str, AppInfo]) -> None:
    """The Secrets live in secret.yaml: the lint sees kube.yaml's references to them
    resolve only when both files are linted together."""
    problems = lint(manifests(example_plan("factors", app_infos["factors"])))
    assert problems and all("names no Secret of the output" in p for p in problems), problems


def _first(objects: list[dict[str, Any]], kind: str, **spec: Any) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and all(obj["spec"].get(k) == v for k, v in spec.items()):
            return obj
    raise AssertionError(kind)


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _first(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


Mutation = Callable[[list[dict[str, Any]]], object]

MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "bad name": (lambda o: o[1]["metadata"].update(name="Hello_Main"), "DNS-1123 label"),
    "selector mismatch": (
        lambda o: _first(o, "Deployment")["spec"]["selector"]["matchLabels"].update(
            {"pyweaver.dev/group": "other"}
        ),
        "does not match the template labels",
    ),
    "missing target port": (
        lambda o: _first(o, "Service", type="LoadBalancer")["spec"]["ports"][0].update(
            targetPort="nope"
        ),
        "targetPort 'nope' is no port",
    ),
    "service selects nothing": (
        lambda o: _first(o, "Service", type="LoadBalancer")["spec"]["selector"].update(
            {"pyweaver.dev/version": "x"}
        ),
        "selects no pod",
    ),
    "hpa without deployment": (
        lambda o: _first(o, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(
            name="gone"
        ),
        "names no Deployment",
    ),
    "missing config map": (
        lambda o: o.pop(0),
        "names no ConfigMap",
    ),
    "probe on a missing port": (
        lambda o: _container(o)["readinessProbe"]["httpGet"].update(port="healthz"),
        "readinessProbe port 'healthz'",
    ),
    "duplicate port": (
        lambda o: _container(o)["ports"].append({"name": "again", "containerPort": 10000}),
        "container port 10000 is used twice",
    ),
    "bad label value": (
        lambda o: o[0]["metadata"]["labels"].update(x="-bad-"),
        "not a valid label value",
    ),
    "group not in kube.json": (
        lambda o: _container(o)["env"][0].update(value="app.Gone"),
        "group 'app.Gone' is not in kube.json",
    ),
    "kube.json names a missing service": (
        lambda o: o.pop(1),
        "names no headless Service",
    ),
    "duplicate name": (lambda o: o.append(copy.deepcopy(o[1])), "two objects of this kind"),
    "missing secret": (
        lambda o: o.remove(_kind(o, "Secret")),
        "names no Secret of the output",
    ),
    "secret item not in the secret": (
        lambda o: _tls_volume(o)["secret"].update(items=[{"key": "gone.pem", "path": "x"}]),
        "asks for key 'gone.pem'",
    ),
    "bad secret key": (
        lambda o: _kind(o, "Secret")["data"].update({"a/b": ""}),
        "data key 'a/b' is not a valid file name",
    ),
}


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def _tls_volume(objects: list[dict[str, Any]]) -> dict[str, Any]:
    volumes = _first(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume: dict[str, Any] = next(v for v in volumes if "secret" in v)
    return volume


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_lint_finds_what_schemas_miss(mutation: str, app_infos: dict[str, AppInfo]) -> None:
    objects = everything("factors", app_infos)
    assert lint(objects) == []
    change, expected = MUTATIONS[mutation]
    change(objects)
    problems = lint(objects)
    assert any(expected in problem for problem in problems), problems
