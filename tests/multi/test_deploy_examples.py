"""The collatz and factors examples under ``pyweaver multi deploy``, with their own
weaver.toml (colocation, replicas, a component config section), over HTTP through the
listener proxy. (hello has its own tests in test_deploy_listeners.py.)"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from .test_deploy_listeners import start, wait_for_listener

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def example_config(example: str, directory: Path) -> Path:
    """The example's own weaver.toml, with its binary made absolute and every listener
    on a free loopback port."""
    text = (EXAMPLES / example / "weaver.toml").read_text()
    text = text.replace('binary = "app.py"', f'binary = "{EXAMPLES / example / "app.py"}"')
    text = re.sub(r'address = "localhost:\d+"', 'address = "127.0.0.1:0"', text)
    path = directory / "weaver.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("example", "path", "expected", "groups"),
    [
        ("collatz", "/?x=6", "6 3 10 5 16 8 4 2 1\n", {"main", "app.Odd"}),
        ("factors", "/?x=12", "1 2 3 4 6 12\n", {"main", "app.Factorer"}),
    ],
)
def test_example_under_multi_deploy(
    tmp_path: Path, example: str, path: str, expected: str, groups: set[str]
) -> None:
    data_dir = tmp_path / "data"
    process = start(example_config(example, tmp_path), data_dir, tmp_path / "deploy.log")
    try:
        report = wait_for_listener(data_dir, process)
        (listener,) = report["listeners"]
        with httpx.Client(base_url=f"http://{listener['proxy']}", timeout=10) as client:
            for _ in range(3):
                response = client.get(path)
                assert (response.status_code, response.text) == (200, expected)
        report = wait_for_listener(data_dir, process)
        assert {group["name"] for group in report["groups"]} == groups, report["groups"]
        if example == "factors":  # replicas = 3 in its weaver.toml
            (factorer,) = [g for g in report["groups"] if g["name"] == "app.Factorer"]
            assert len(factorer["replicas"]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
