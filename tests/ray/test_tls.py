"""mTLS on Ray, without Ray: ``[ray] mtls`` (on by default), what the deploying process
gives each replica actor, and how a replica turns it into files."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pyweaver._errors import ConfigError
from pyweaver.contract import load_config
from pyweaver.contract._tls import TlsFiles, group_identity
from pyweaver.deployers._node import NodeTls, _files
from pyweaver.deployers.kube import AppInfo
from pyweaver.deployers.ray import parse_ray
from pyweaver.deployers.ray._deployer import RayDeployment
from pyweaver.deployers.ray._replica import _node_tls

CONFIG = """\
[serviceweaver]
name = "shop"
binary = "app.py"
"""
APP = AppInfo(
    components=["app.Cart", "app.Store", "app.Web"],
    edges=[["app.Web", "app.Cart"], ["app.Cart", "app.Store"]],
)


def test_mtls_is_on_by_default_and_can_be_turned_off() -> None:
    assert parse_ray({}).mtls
    assert not parse_ray({"mtls": False}).mtls
    with pytest.raises(ConfigError, match=r"\[ray\] mtls: expected true or false"):
        parse_ray({"mtls": "no"})


def deployment(tmp_path: Path, ray_section: dict[str, object]) -> RayDeployment:
    (tmp_path / "weaver.toml").write_text(CONFIG)
    config = load_config(tmp_path / "weaver.toml")
    return RayDeployment(config, parse_ray(ray_section), APP, deployment_id="d-1")


def test_each_replica_gets_its_groups_certificate_and_who_may_call_it(tmp_path: Path) -> None:
    material = deployment(tmp_path, {})._tls_material()
    assert set(material) == {"main", "app.Cart", "app.Store", "app.Web"}
    # Who may call which of a group's components: the app's Ref edges, main everything.
    assert material["app.Store"]["callers"] == {"app.Cart": ["app.Store"], "main": ["app.Store"]}
    assert material["app.Web"]["callers"] == {"main": ["app.Web"]}
    assert material["main"]["callers"] == {}
    # One CA for the deployment: every group's certificate is issued by it, and each
    # names its own group.
    cas = {m["group"]["ca"] for m in material.values()}
    assert len(cas) == 1
    tls = _node_tls(material["app.Store"])
    directory = tmp_path / "replica" / "tls"
    (tmp_path / "replica").mkdir(mode=0o700)
    files = _files(tls.group, directory, "group")
    deployer = _files(tls.deployer, directory, "deployer")
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in (files.ca, files.cert, files.key, deployer.key):
        assert Path(path).stat().st_mode & 0o777 == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(files.cert).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        group_identity("d-1", "app.Store")
    ]
    # The files load into the TLS 1.3 contexts the weavelet and envelope use.
    assert files.server_context().minimum_version == ssl.TLSVersion.TLSv1_3
    # The key is never in a repr (the actor's arguments may end up in Ray's logs).
    assert "PRIVATE KEY" not in repr(tls)


def test_with_mtls_off_replicas_get_nothing(tmp_path: Path) -> None:
    assert deployment(tmp_path, {"mtls": False})._tls_material() == {}


def test_files_already_on_disk_are_used_as_they_are(tmp_path: Path) -> None:
    files = TlsFiles(ca="/m/ca.crt", cert="/m/tls.crt", key="/m/tls.key")
    assert _files(NodeTls(group=files, deployer=files).group, tmp_path / "x", "g") is files
    assert not (tmp_path / "x").exists()
