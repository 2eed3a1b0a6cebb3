"""``[kube] mtls`` (on by default): the Secrets of ``secret.yaml``, what ``kube.json``
and ``kube.yaml`` say about them, and how a pod loads its group's."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509

from pyweaver._errors import ConfigError, PyWeaverError
from pyweaver.contract._tls import group_identity
from pyweaver.deployers._ca import DeploymentCA
from pyweaver.deployers.kube import AppInfo, manifests, parse_kube
from pyweaver.deployers.kube._manifests import secrets
from pyweaver.deployers.kube._pod import pod_tls

from .conftest import example_plan


def test_mtls_is_on_by_default_and_can_be_turned_off() -> None:
    assert parse_kube({}).mtls
    assert not parse_kube({"mtls": False}).mtls
    with pytest.raises(ConfigError, match=r"\[kube\] mtls: expected true or false"):
        parse_kube({"mtls": 1})


def test_each_groups_pods_mount_only_their_groups_secret(app_infos: dict[str, AppInfo]) -> None:
    deployment = example_plan("collatz", app_infos["collatz"])
    objects = manifests(deployment)
    tls = secrets(deployment, DeploymentCA.create(deployment.deployment_id))
    by_name = {s["metadata"]["name"]: s for s in tls}
    keys = set()
    for group in deployment.groups:
        pod = next(
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == group.resource
        )
        volumes = pod["spec"]["template"]["spec"]["volumes"]
        [secret_volume] = [v for v in volumes if "secret" in v]
        assert secret_volume["secret"]["secretName"] == deployment.secret_name(group)
        data = by_name[deployment.secret_name(group)]["data"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
            group_identity(deployment.deployment_id, group.name)
        ]
        keys.add(data["tls.key"])
    assert len(keys) == len(deployment.groups)  # a key per group
    # Who may call whom travels in kube.json: Odd and Even call each other (one group);
    # main may call both.
    pod_config = deployment.pod_config()
    assert pod_config.tls_dir == "/var/run/pyweaver/tls"
    assert pod_config.groups["app.Odd"].callers == {"main": ["app.Even", "app.Odd"]}


def test_a_pod_without_its_secret_says_what_is_missing(
    app_infos: dict[str, AppInfo], tmp_path: Path
) -> None:
    pod_config = example_plan("factors", app_infos["factors"]).pod_config()
    assert pod_tls(pod_config, "main", "") is None
    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(PyWeaverError, match=r"tls.crt, tls.key, deployer.crt, deployer.key"):
        pod_tls(pod_config, "main", str(tmp_path))
