"""``pyweaver kube deploy``: writes the files, says where, refuses bad configs."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pyweaver.deployers.kube._lint import lint

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow  # every test runs the CLI


def pyweaver(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyweaver", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_deploy_writes_manifests_and_a_dockerfile_and_prints_where(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = pyweaver("kube", "deploy", str(EXAMPLES / "factors" / "weaver.toml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'kube.yaml'}" in result.stdout
    assert f"wrote {out / 'Dockerfile'}" in result.stdout
    assert f"wrote {out / 'secret.yaml'}" in result.stdout
    objects = list(yaml.safe_load_all((out / "kube.yaml").read_text()))
    secrets = list(yaml.safe_load_all((out / "secret.yaml").read_text()))
    assert lint([*objects, *secrets]) == []
    assert {o["kind"] for o in objects} == {
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
    assert "ENTRYPOINT" in (out / "Dockerfile").read_text()
    # mTLS is on by default: secret.yaml holds one Secret per group, private to the user.
    assert (out / "secret.yaml").stat().st_mode & 0o777 == 0o600
    assert [s["kind"] for s in secrets] == ["Secret", "Secret"]
    keys = base64.b64decode(secrets[0]["data"]["tls.key"])
    assert b"PRIVATE KEY" in keys and b"PRIVATE KEY" not in (out / "kube.yaml").read_bytes()
    # A second run: the same kube.yaml (deterministic), fresh keys in secret.yaml.
    first_manifests, first_secrets = (out / "kube.yaml").read_text(), secrets
    again = pyweaver("kube", "deploy", str(EXAMPLES / "factors" / "weaver.toml"), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "kube.yaml").read_text() == first_manifests
    second = list(yaml.safe_load_all((out / "secret.yaml").read_text()))
    assert second[0]["data"]["tls.key"] != first_secrets[0]["data"]["tls.key"]


def test_deploy_with_mtls_off_writes_no_secrets(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLES / "factors", app)
    with (app / "weaver.toml").open("a") as file:
        file.write("\n[kube]\nmtls = false\n")
    out = tmp_path / "out"
    result = pyweaver("kube", "deploy", str(app / "weaver.toml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert not (out / "secret.yaml").exists()
    objects = list(yaml.safe_load_all((out / "kube.yaml").read_text()))
    assert lint(objects) == []
    assert "secret" not in (out / "kube.yaml").read_text().lower()


def test_deploy_refuses_a_bad_kube_section(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(EXAMPLES / "factors", app)
    with (app / "weaver.toml").open("a") as file:
        file.write('\n[kube]\nservice_type = "Ingress"\n')
    result = pyweaver("kube", "deploy", str(app / "weaver.toml"), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "[kube] service_type: expected one of ClusterIP, NodePort, LoadBalancer" in result.stderr
    assert not (tmp_path / "out").exists()


def test_deploy_refuses_an_app_that_does_not_import(tmp_path: Path) -> None:
    (tmp_path / "weaver.toml").write_text('[serviceweaver]\nbinary = "app.py"\n')
    (tmp_path / "app.py").write_text("raise RuntimeError('broken at import')\n")
    result = pyweaver("kube", "deploy", str(tmp_path / "weaver.toml"), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "broken at import" in result.stderr
