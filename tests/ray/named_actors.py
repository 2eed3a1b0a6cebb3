"""A driver (run inside a netns host, see ``RayCluster.driver``): reports every named
actor alive on the cluster, in every namespace, as ``namespace/name``."""

from __future__ import annotations

import ray

from tests.cluster.drivers._driver import connect, emit


def main() -> None:
    connect()
    found = ray.util.list_named_actors(all_namespaces=True)
    emit("actors", names=sorted(f"{entry['namespace']}/{entry['name']}" for entry in found))


if __name__ == "__main__":
    main()
