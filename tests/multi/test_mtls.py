"""``[multi] mtls = true``: the factors example deployed with mutual TLS on every
control and data connection serves as it does without (issue 12, item 3)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from .test_deploy_examples import example_config
from .test_deploy_listeners import start, wait_for_listener

pytestmark = pytest.mark.slow


def test_factors_with_mtls_serves_normally(tmp_path: Path) -> None:
    config = example_config("factors", tmp_path)
    text = config.read_text().replace("[multi]\n", "[multi]\nmtls = true\n", 1)
    assert "mtls = true" in text
    config.write_text(text)
    data_dir = tmp_path / "data"
    process = start(config, data_dir, tmp_path / "deploy.log")
    try:
        report = wait_for_listener(data_dir, process)
        (listener,) = report["listeners"]
        with httpx.Client(base_url=f"http://{listener['proxy']}", timeout=10) as client:
            for x, expected in [(12, "1 2 3 4 6 12\n"), (7, "1 7\n"), (12, "1 2 3 4 6 12\n")]:
                response = client.get(f"/?x={x}")
                assert (response.status_code, response.text) == (200, expected)
        report = wait_for_listener(data_dir, process)
        (factorer,) = [g for g in report["groups"] if g["name"] == "app.Factorer"]
        assert len(factorer["replicas"]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log = (tmp_path / "deploy.log").read_text()
    assert "not authorized" not in log and "TLS handshake failed" not in log, log[-3000:]
