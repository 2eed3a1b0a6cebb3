"""The public surface of the envelope and multi deployer packages, pinned."""

from __future__ import annotations

import pyweaver.deployers.multi as multi
import pyweaver.envelope as envelope

ENVELOPE = {
    "BOOTSTRAP_ENV",
    "Bootstrap",
    "BootstrapError",
    "Child",
    "CrashLoopError",
    "Envelope",
    "EnvelopeHandler",
    "InProcessChild",
    "ProcessChild",
    "ProcessError",
    "ProcessExitedError",
    "ReadinessTimeoutError",
    "RestartPolicy",
    "RunningChild",
    "messages",
}

MULTI = {
    "DEFAULT_REPLICAS",
    "DeploymentFailed",
    "Group",
    "MultiDeployer",
    "Slot",
    "component_modules",
    "group_layout",
    "weavertest_deployment",
}


def test_envelope_exports() -> None:
    assert set(envelope.__all__) == ENVELOPE
    assert all(hasattr(envelope, name) for name in ENVELOPE)


def test_multi_exports() -> None:
    assert set(multi.__all__) == MULTI
    assert all(hasattr(multi, name) for name in MULTI)
