"""Opt-in: the manifests on a real cluster. Runs only when ``KUBECONFIG`` is set and
``PYWEAVER_KUBE_E2E_IMAGE`` names an image of examples/factors (built with the generated
Dockerfile and pushed where the cluster can pull it); nothing here builds images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import EXAMPLES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="needs a real Kubernetes cluster: set KUBECONFIG (and PYWEAVER_KUBE_E2E_IMAGE)",
    ),
]


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_factors_answers_through_its_service_on_a_cluster(tmp_path: Path) -> None:
    image = os.environ.get("PYWEAVER_KUBE_E2E_IMAGE")
    if not image or shutil.which("kubectl") is None:
        pytest.skip("needs kubectl and PYWEAVER_KUBE_E2E_IMAGE (an image of examples/factors)")
    app = tmp_path / "factors"
    shutil.copytree(EXAMPLES / "factors", app)
    with (app / "weaver.toml").open("a") as file:
        file.write(f'\n[kube]\nimage = "{image}"\nservice_type = "ClusterIP"\n')
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyweaver",
            "kube",
            "deploy",
            str(app / "weaver.toml"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    version = result.stdout.split("version ", 1)[1].split(":", 1)[0]
    selector = f"pyweaver.dev/version={version}"
    try:
        assert kubectl("apply", "-f", str(out / "kube.yaml")).returncode == 0
        waited = kubectl(
            "wait", "--for=condition=Available", "deployment", "-l", selector, "--timeout=300s"
        )
        assert waited.returncode == 0, waited.stderr
        service = f"factors-{version}"
        answer = ""
        for _ in range(30):
            run = kubectl(
                "run",
                f"probe-{version}-{int(time.time())}",
                "--rm",
                "-i",
                "--restart=Never",
                "--image=busybox",
                "--",
                "wget",
                "-qO-",
                f"http://{service}/?x=12",
            )
            answer = run.stdout
            if "1 2 3 4 6 12" in answer:
                break
            time.sleep(5)
        assert "1 2 3 4 6 12" in answer
    finally:
        kubectl("delete", "all,configmaps,hpa", "-l", selector)
