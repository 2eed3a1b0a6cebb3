"""``pyweaver kube deploy``: writes the files, says where, refuses bad configs."""

from __future__ import annotations

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
    objects = list(yaml.safe_load_all((out / "kube.yaml").read_text()))
    assert lint(objects) == []
    assert {o["kind"] for o in objects} == {
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
    assert "ENTRYPOINT" in (out / "Dockerfile").read_text()


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
