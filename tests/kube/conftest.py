"""Shared pieces of the Kubernetes deployer's tests: the examples' plans, built from
what the apps really declare (learnt once per session, by importing them in a
subprocess as ``pyweaver kube deploy`` does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyweaver.contract import load_config
from pyweaver.deployers.kube import AppInfo, Plan, parse_kube, plan
from pyweaver.deployers.kube._cli import describe_app

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
GOLDEN = Path(__file__).parent / "golden"
#: Set to 1 to rewrite the golden files from the current output.
REGENERATE_ENV = "PYWEAVER_REGENERATE_GOLDEN"
KUBE_EXAMPLES = ("factors", "collatz")


@pytest.fixture(scope="session")
def app_infos() -> dict[str, AppInfo]:
    infos = {}
    for name in KUBE_EXAMPLES:
        path = EXAMPLES / name / "weaver.toml"
        infos[name] = describe_app(path, load_config(path))
    return infos


def example_plan(name: str, info: AppInfo) -> Plan:
    """The plan ``pyweaver kube deploy examples/NAME/weaver.toml`` writes."""
    path = EXAMPLES / name / "weaver.toml"
    config = load_config(path)
    kube = parse_kube(config.deployers.get("kube", {}), file=str(path))
    return plan(config, path.read_text(encoding="utf-8"), kube, info)
