"""Pin one actor to each host (by its custom resource); each reports where it runs.

Result `placed`: per host, the actor's node IP as Ray sees it, its PID, its node id, and
whether it could bind a TCP socket on the host's address, which only a process inside that
host's network namespace can do.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import ray

from tests.cluster.drivers._driver import connect, emit, node_ids_by_host


@ray.remote(num_cpus=0)
class Where:
    def report(self, expected_ip: str) -> dict[str, Any]:
        try:
            with socket.create_server((expected_ip, 0)):
                bound = True
        except OSError:
            bound = False
        return {
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "bound_host_address": bound,
        }


def main() -> None:
    connect()
    hosts = node_ids_by_host()
    began = time.monotonic()
    actors = {host: Where.options(resources={host: 1}).remote() for host in hosts}  # type: ignore[attr-defined]
    reports = ray.get(
        [actor.report.remote("10.211.0." + host[1:]) for host, actor in actors.items()],
        timeout=60,
    )
    emit(
        "placed",
        seconds=time.monotonic() - began,
        node_ids=hosts,
        actors=dict(zip(actors, reports, strict=True)),
    )
    for actor in actors.values():
        ray.kill(actor)


if __name__ == "__main__":
    main()
