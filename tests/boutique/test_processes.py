"""The store as users run it, in real processes: the demo (``pyweaver multi deploy``,
one process per component), the demo on ``colocated.toml`` (all in one process), and
``python app.py`` in one process. Every server binds 127.0.0.1; every process is stopped
by its PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import EXAMPLE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run_demo(*args: str) -> str:
    env = {**os.environ, "DEMO_ONCE": "1", "DEMO_PORT": "0", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "demo.py"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def check_walk(out: str) -> None:
    assert "9 products" in out
    assert "POST /setCurrency EUR          200  -> /; shop_currency=EUR" in out
    assert "Loafers now at €79.60" in out
    # 2 x 79.601946042 + 7.952233525 = 167.156125609
    assert "Cart (2), shipping €7.95, total €167.15" in out
    assert "Your order is complete!" in out and "total paid €167.15" in out
    assert "empty after the order" in out
    assert re.search(r"Online Boutique at http://127\.0\.0\.1:\d+", out)
    assert "stopped the deployment" in out


def test_demo_walks_a_shopper_through_the_split_deployment() -> None:
    out = run_demo()
    assert "multi deploy" in out and "(weaver.toml;" in out
    check_walk(out)


def test_demo_on_colocated_toml_runs_everything_in_one_process() -> None:
    out = run_demo("--colocated")
    assert "(colocated.toml;" in out
    check_walk(out)
    processes = re.search(r"\((\d+) processes\)", out)
    assert processes is not None
    # The deployer's own helpers aside, the app is one weavelet; split it is one per component.
    assert int(processes.group(1)) <= 3, out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("how", ["python app.py", "pyweaver single deploy"])
def test_the_store_serves_in_one_process(tmp_path: Path, how: str) -> None:
    port = free_port()
    config = tmp_path / "weaver.toml"
    config.write_text(
        f'[serviceweaver]\nbinary = "{EXAMPLE / "app.py"}"\n'
        f'[single]\nlisteners.boutique = {{address = "127.0.0.1:{port}"}}\n'
    )
    argv = (
        [str(EXAMPLE / "app.py")]
        if how == "python app.py"
        else ["-m", "pyweaver", "single", "deploy", str(config)]
    )
    proc = subprocess.Popen(
        [sys.executable, *argv],
        env={**os.environ, "PYWEAVER_CONFIG": str(config)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        page = ""
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert "Hot Products" in page and "$19.99" in page
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.parametrize("config", ["weaver.toml", "colocated.toml"])
def test_pyweaver_check_validates_both_configs(config: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyweaver", "check", str(EXAMPLE / config)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 10 component(s), no errors" in result.stdout
    assert "boutique.api.CartCache" in result.stdout and "[not retriable]" in result.stdout
