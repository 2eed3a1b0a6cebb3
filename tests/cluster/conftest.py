"""Fixtures for multi-host tests: netns hosts and one Ray cluster across them, per module.

A module that needs a different shape (more hosts, other health-check settings) overrides
`cluster_hosts` / `cluster_health_check` in its own namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster import netns, ray_cluster
from tests.cluster.netns import Network
from tests.cluster.ray_cluster import HealthCheck, RayCluster


@pytest.fixture(scope="module")
def cluster_hosts() -> int:
    return 3


@pytest.fixture(scope="module")
def cluster_health_check() -> HealthCheck | None:
    """Shortened settings; PYWEAVER_TEST_RAY_HEALTH_CHECK=ray-defaults keeps Ray's own
    (to measure failover as a real deployment would see it; about a minute)."""
    if os.environ.get("PYWEAVER_TEST_RAY_HEALTH_CHECK") == "ray-defaults":
        return None
    return HealthCheck()


@pytest.fixture(scope="module")
def network(cluster_hosts: int) -> Iterator[Network]:
    reason = netns.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    netns.cleanup_leftovers()
    with Network.create(cluster_hosts) as created:
        yield created


@pytest.fixture(scope="module", name="cluster")
def cluster_fixture(
    request: pytest.FixtureRequest, cluster_health_check: HealthCheck | None
) -> Iterator[RayCluster]:
    reason = ray_cluster.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    network: Network = request.getfixturevalue("network")  # only once ray is known present
    with RayCluster.start(network, cluster_health_check) as started:
        ready = ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in started.ready_seconds.items()
        )
        print(
            f"\n[cluster] {len(network.hosts)} nodes alive {started.start_seconds:.1f} s after"
            f" launching the head (ray start ready: {ready})"
        )
        yield started
