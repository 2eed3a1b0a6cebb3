"""Shared pieces of the Kubernetes deployer's tests: the examples' plans, built from
what the apps really declare (learnt once per session by importing them in this
process; ``pyweaver kube deploy`` does the same in a subprocess, which the CLI tests
cover)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pyweaver._check import _describe
from pyweaver._runtime._component import isolated_registrations
from pyweaver.contract import load_config
from pyweaver.deployers.kube import AppInfo, Plan, parse_kube, plan

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
GOLDEN = Path(__file__).parent / "golden"
#: Set to 1 to rewrite the golden files from the current output.
REGENERATE_ENV = "PYWEAVER_REGENERATE_GOLDEN"
KUBE_EXAMPLES = ("factors", "collatz")


@pytest.fixture(scope="session")
def app_infos() -> dict[str, AppInfo]:
    # In this process (the CLI tests cover the subprocess that `kube deploy` uses).
    infos = {}
    for name in KUBE_EXAMPLES:
        with isolated_registrations():
            sys.modules.pop("app", None)
            try:
                facts = _describe(str(EXAMPLES / name / "app.py"), None, None)["facts"]
                infos[name] = AppInfo(
                    components=sorted(facts["components"]),
                    routed=sorted(facts["routed"]),
                    listeners=dict(sorted(facts["listener_fields"].items())),
                    edges=sorted([list(edge) for edge in facts["edges"]]),
                )
            finally:
                sys.modules.pop("app", None)
    return infos


def example_plan(name: str, info: AppInfo) -> Plan:
    """The plan ``pyweaver kube deploy examples/NAME/weaver.toml`` writes."""
    path = EXAMPLES / name / "weaver.toml"
    config = load_config(path)
    kube = parse_kube(config.deployers.get("kube", {}), file=str(path))
    return plan(config, path.read_text(encoding="utf-8"), kube, info)
