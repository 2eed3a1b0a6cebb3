"""How a pod finds the pods of another group: DNS, and routing info made from it.

Every group has a headless Service; its DNS name has one A (or AAAA) record per
*ready* pod of the group. A pod looks the name up every ``discovery_interval`` seconds
and tells its weavelet the group's replicas as ``tcp://<pod IP>:<data port>``. No pod
needs Kubernetes API credentials, at the price of DNS caching delays (kube-dns answers
headless names with a short TTL; the look-up bypasses no cache).

Routed groups get an :class:`~pyweaver.contract.Assignment` built from the *sorted*
set of replica addresses alone (never from a pod's history), so every pod that sees
the same replicas routes every key to the same replica, with no coordination.

The look-up is a :class:`Resolver`: :class:`DnsResolver` in a cluster, and
:class:`FileResolver` (names mapped to ``host:port`` lists in a JSON file that is
re-read on every look-up, so a test can change it) for running pods as local
processes; ``PYWEAVER_KUBE_RESOLVE_FILE`` selects it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Final, Protocol

import anyio

from pyweaver._net import format_address
from pyweaver.contract import Assignment
from pyweaver.contract import messages as m

__all__ = [
    "RESOLVE_FILE_ENV",
    "DnsResolver",
    "FileResolver",
    "Resolver",
    "routing_info",
]

#: Names a JSON file ``{"dns.name": ["127.0.0.1:7001", ...]}`` to resolve from instead
#: of DNS (tests run pods as local processes with it).
RESOLVE_FILE_ENV: Final = "PYWEAVER_KUBE_RESOLVE_FILE"


class Resolver(Protocol):
    async def resolve(self, name: str, port: int) -> list[str]:
        """The sorted ``host:port`` endpoints behind ``name`` (empty: none now)."""
        ...


class DnsResolver:
    """The system resolver (the pod's ``/etc/resolv.conf``: kube-dns/CoreDNS)."""

    async def resolve(self, name: str, port: int) -> list[str]:
        try:
            infos = await anyio.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError:
            # NXDOMAIN: a headless Service with no ready pod has no records at all.
            return []
        return sorted({format_address(str(info[4][0]), port) for info in infos})


class FileResolver:
    """Names resolved from a JSON file, read afresh on every look-up; the file's
    ports replace the asked-for one (local pods cannot share a port)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def resolve(self, name: str, port: int) -> list[str]:
        try:
            text = await anyio.Path(self.path).read_text(encoding="utf-8")
            table = json.loads(text)
        except (OSError, ValueError):
            return []  # mid-rewrite, or not there yet: like a failed look-up
        entries = table.get(name, []) if isinstance(table, dict) else []
        return sorted({str(entry) for entry in entries})


def routing_info(
    group: str, components: list[str], version: int, endpoints: list[str], *, routed: bool
) -> m.RoutingInfo:
    """The routing info of ``group`` whose ready pods serve at ``endpoints``."""
    ordered = sorted(set(endpoints))
    return m.RoutingInfo(
        group=group,
        components=list(components),
        version=version,
        replicas={endpoint: f"tcp://{endpoint}" for endpoint in ordered},
        assignment=Assignment.build(ordered).to_wire() if routed and ordered else None,
    )
