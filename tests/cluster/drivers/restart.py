"""An actor with `max_restarts` is SIGKILLed by the test; measure how soon Ray restarts it.

Protocol: the driver places the actor on HOST and reports `victim` (its PID); the test
kills that PID and sends `{"killed_at": <time.monotonic()>}` (CLOCK_MONOTONIC is one
clock for every process on the machine); the driver calls the actor until a new process
answers and reports `restarted` with seconds from the kill to the new constructor and to
the first answered call.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import ray

from tests.cluster.drivers._driver import connect, emit, receive

DEADLINE_S = 60.0


@ray.remote(num_cpus=0, max_restarts=-1)
class Victim:
    def __init__(self) -> None:
        self.constructed_at = time.monotonic()

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "constructed_at": self.constructed_at,
        }


def main() -> None:
    host = sys.argv[1]
    connect()
    victim = Victim.options(resources={host: 1}).remote()  # type: ignore[attr-defined]
    before: dict[str, Any] = ray.get(victim.info.remote(), timeout=60)
    emit("victim", **before)
    killed_at = float(receive()["killed_at"])
    deadline = time.monotonic() + DEADLINE_S
    failed_calls = 0
    while time.monotonic() < deadline:
        try:
            after: dict[str, Any] = ray.get(victim.info.remote(), timeout=0.5)
        except ray.exceptions.RayError:
            failed_calls += 1
            time.sleep(0.05)
            continue
        if after["pid"] != before["pid"]:
            answered_at = time.monotonic()
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"actor not restarted within {DEADLINE_S} s")
    emit(
        "restarted",
        old_pid=before["pid"],
        new_pid=after["pid"],
        node_ip=after["node_ip"],
        constructor_seconds=after["constructed_at"] - killed_at,
        answered_seconds=answered_at - killed_at,
        failed_calls=failed_calls,
    )
    ray.kill(victim)


if __name__ == "__main__":
    main()
