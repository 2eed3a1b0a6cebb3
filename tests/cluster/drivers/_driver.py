"""Driver-side helpers shared by the scripts in this directory (never by actor code).

Actor classes are defined in each driver script's `__main__`, so Ray ships them by value;
anything they referenced from this module would have to be importable on the workers,
which by design share no code with the driver.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import ray

RESULT_PREFIX = "RESULT "


def connect(runtime_env: dict[str, Any] | None = None) -> float:
    """`ray.init` against the cluster named by the environment; returns seconds taken."""
    began = time.monotonic()
    ray.init(
        address=os.environ["RAY_ADDRESS"],
        _node_ip_address=os.environ["PYWEAVER_NODE_IP"],
        runtime_env=runtime_env,
        log_to_driver=False,
        configure_logging=False,
    )
    return time.monotonic() - began


def emit(tag: str, **fields: Any) -> None:
    """Report one result to the test (a `RESULT {json}` line on stdout)."""
    print(RESULT_PREFIX + json.dumps({"tag": tag, **fields}), flush=True)


def receive() -> dict[str, Any]:
    """The next instruction from the test (a JSON line on stdin)."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the test closed stdin before sending an instruction")
    message: dict[str, Any] = json.loads(line)
    return message


def nodes() -> list[dict[str, Any]]:
    """`ray.nodes()`, typed."""
    found: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return found


def node_ids_by_host() -> dict[str, str]:
    """Live nodes, keyed by the per-host custom resource the fixture gives each node."""
    found: dict[str, str] = {}
    for node in nodes():
        if not node["Alive"]:
            continue
        for resource in node["Resources"]:
            if resource.startswith("h") and resource[1:].isdigit():
                found[resource] = node["NodeID"]
    return found


def host_of_ip(ip: str) -> str:
    """`h<i>` for an address `10.211.0.<i>` made by the netns fixture."""
    return "h" + ip.rsplit(".", 1)[1]
