"""The chaos test (issue 12 item 6): ``pyweaver multi deploy`` of a counter app under
bounded HTTP load while replicas are SIGKILLed and SIGSTOPped and every reachable socket
is flooded with idle connections. Asserts: no idempotent call lost, no ``not_retriable``
call run twice, no call past its deadline (+ slack), memory and descriptors bounded, the
deployment still up; recovery times are printed. ``benchmarks/chaos.py`` runs it longer.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.chaos import harness

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
def test_nothing_lost_nothing_hung_under_chaos(tmp_path: Path) -> None:
    settings = harness.Settings(clients=6, duration=20.0, kill_every=5.0, stop_for=3.0)
    result = harness.run(tmp_path, settings)
    print(harness.summary(result))
    problems = []
    if not result.deployment_alive:
        problems.append("the deployment exited")
    if result.lost_idempotent:
        problems.append(f"idempotent calls lost: {result.lost_idempotent[:5]}")
    if result.run_twice:
        problems.append(f"not_retriable executions run twice: {result.run_twice[:5]}")
    if result.past_deadline:
        problems.append(f"calls past their deadline: {result.past_deadline[:5]}")
    if not result.kill_recovery or any(math.isnan(t) for t in result.kill_recovery):
        problems.append(f"a killed replica was not replaced: {result.kill_recovery}")
    if any(math.isnan(t) for t in result.stop_recovery):
        problems.append(
            f"calls stopped flowing while a replica was stopped: {result.stop_recovery}"
        )
    problems += harness.bounded(result)
    assert sum(result.calls.values()) > 0
    assert not problems, (
        "\n".join(problems) + "\n" + harness.summary(result) + "\n" + result.log_tail
    )
