"""Wait until the cluster has COUNT live nodes (bounded by TIMEOUT seconds); report them."""

from __future__ import annotations

import sys
import time

from tests.cluster.drivers._driver import connect, emit, nodes


def main() -> None:
    count, timeout_s = int(sys.argv[1]), float(sys.argv[2])
    connect_seconds = connect()
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [node for node in nodes() if node["Alive"]]
        if len(alive) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    emit(
        "nodes",
        connect_seconds=connect_seconds,
        alive=sorted(node["NodeManagerAddress"] for node in alive),
    )
    if len(alive) < count:
        raise SystemExit(f"only {len(alive)} of {count} nodes alive after {timeout_s} s")


if __name__ == "__main__":
    main()
