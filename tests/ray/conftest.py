"""The multi-host fixtures of tests/cluster (netns hosts, a Ray cluster across them)."""

from tests.cluster.conftest import cluster_fixture as cluster_fixture
from tests.cluster.conftest import cluster_health_check as cluster_health_check
from tests.cluster.conftest import cluster_hosts as cluster_hosts
from tests.cluster.conftest import network as network

__all__ = ["cluster_fixture", "cluster_health_check", "cluster_hosts", "network"]
