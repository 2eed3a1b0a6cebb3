"""`pyweaver check`: validates without running, prints the graph, names each fault."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyweaver._check import check_app
from pyweaver._runtime._component import isolated_registrations

APPS = Path(__file__).parent / "apps"
EXAMPLES = Path(__file__).parent.parent / "examples"


def pyweaver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyweaver", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_check_a_good_app_prints_the_graph_and_the_cycle() -> None:
    with isolated_registrations():
        report = check_app(str(APPS / "good.toml"))
    assert report.ok, report.errors
    text = report.text()
    assert "component good_app.Store" in text
    assert "get(key: str) -> " in text
    assert "ref store -> good_app.Store" in text
    assert "listener web" in text
    assert "cycle: good_app.Front -> good_app.Store -> good_app.Front" in text


@pytest.mark.slow
def test_check_cli_rejects_bad_types_and_names_them() -> None:
    result = pyweaver("check", str(APPS / "bad_types.py"))
    assert result.returncode == 1
    assert "bad_types.Scheduler.schedule parameter 'job'" in result.stdout
    assert "Callable" in result.stdout


@pytest.mark.slow
def test_check_cli_names_each_router_method_with_its_key_type() -> None:
    result = pyweaver("check", str(APPS / "mixed_router.py"))
    assert result.returncode == 1
    assert (
        "mixed_router.Ledger router 'LedgerRouter': every method must return one key type; "
        "got int from balance, str from post"
    ) in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_check_cli_rejects_unknown_config_keys() -> None:
    result = pyweaver("check", str(APPS / "bad_config.toml"))
    assert result.returncode == 1
    assert "bad_config.toml" in result.stdout + result.stderr
    assert "color" in result.stdout + result.stderr


@pytest.mark.slow
def test_check_cli_mermaid() -> None:
    result = pyweaver("check", "--mermaid", str(EXAMPLES / "hello" / "weaver.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("graph TD")
    assert '"app.Reverser"' in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("example", ["hello", "collatz", "factors"])
def test_check_every_example(example: str) -> None:
    result = pyweaver("check", str(EXAMPLES / example / "weaver.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no errors" in result.stdout


@pytest.mark.slow
def test_check_a_missing_app_is_a_clear_error() -> None:
    result = pyweaver("check", str(APPS / "nope.py"))
    assert result.returncode == 1
    assert "nope.py" in result.stderr and "no such file" in result.stderr
