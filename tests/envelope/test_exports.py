"""The public surface of the envelope and multi deployer packages, pinned."""

from __future__ import annotations

import pyweaver.contract as contract
import pyweaver.deployers.multi as multi
import pyweaver.envelope as envelope

ENVELOPE = {
    "Child",
    "CrashLoopError",
    "Envelope",
    "EnvelopeHandler",
    "InProcessChild",
    "Outcome",
    "ProcessChild",
    "ProcessError",
    "ProcessExitedError",
    "ReadinessTimeoutError",
    "RestartPolicy",
    "RunningChild",
    "supervise",
}

MULTI = {
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "group_layout",
}

CONTRACT = {
    "BOOTSTRAP_ENV",
    "CONFIG_ENV",
    "MAIN",
    "AppConfig",
    "Assignment",
    "Bootstrap",
    "BootstrapError",
    "LogEntry",
    "load_config",
    "messages",
    "parse_config",
}


def test_contract_exports() -> None:
    assert set(contract.__all__) == CONTRACT
    assert all(hasattr(contract, name) for name in CONTRACT)


def test_envelope_exports() -> None:
    assert set(envelope.__all__) == ENVELOPE
    assert all(hasattr(envelope, name) for name in ENVELOPE)


def test_multi_exports() -> None:
    assert set(multi.__all__) == MULTI
    assert all(hasattr(multi, name) for name in MULTI)
