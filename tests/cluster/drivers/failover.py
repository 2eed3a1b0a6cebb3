"""An actor on a host that gets partitioned is re-created elsewhere; measure how soon.

The actor has `max_restarts=-1` and *soft* node affinity to HOST (hard affinity to a dead
node could never be satisfied). Protocol: the driver reports `placed`; the test cuts HOST's
link and sends `{"cut_at": <time.monotonic()>}`; the driver watches the GCS node table and
keeps calling the actor, and reports `moved`: seconds from the cut until the node was
marked dead, until the new actor's constructor ran, and until it answered a call.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tests.cluster.drivers._driver import connect, emit, node_ids_by_host, nodes, receive

DEADLINE_S = 200.0  # Ray's default health check takes about a minute


# Not num_cpus=0: measured on Ray 2.60, soft node affinity is ignored for an actor that
# requests no resources at all (it lands on any node); a small CPU share makes it stick.
@ray.remote(num_cpus=0.1, max_restarts=-1)
class Mover:
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
    node_id = node_ids_by_host()[host]
    mover = Mover.options(  # type: ignore[attr-defined]
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)
    ).remote()
    before: dict[str, Any] = ray.get(mover.info.remote(), timeout=60)
    emit("placed", **before)
    cut_at = float(receive()["cut_at"])
    deadline = time.monotonic() + DEADLINE_S
    dead_at: float | None = None
    pending = mover.info.remote()
    after: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if dead_at is None and not any(n["NodeID"] == node_id and n["Alive"] for n in nodes()):
            dead_at = time.monotonic()
        ready, _ = ray.wait([pending], timeout=0.2)
        if not ready:
            continue
        try:
            answer: dict[str, Any] = ray.get(pending)
        except ray.exceptions.RayError:
            answer = {}
        if answer and answer["node_ip"] != before["node_ip"]:
            after = answer
            answered_at = time.monotonic()
            break
        pending = mover.info.remote()
        time.sleep(0.05)
    if after is None:
        raise SystemExit(f"actor not re-created elsewhere within {DEADLINE_S} s")
    emit(
        "moved",
        old_node_ip=before["node_ip"],
        new_node_ip=after["node_ip"],
        node_dead_seconds=None if dead_at is None else dead_at - cut_at,
        constructor_seconds=after["constructed_at"] - cut_at,
        answered_seconds=answered_at - cut_at,
    )
    ray.kill(mover)


if __name__ == "__main__":
    main()
