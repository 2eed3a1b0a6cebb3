"""Choosing the replica for a call.

A :class:`Balancer` gets the endpoints that have a live connection (in a stable order)
and the call's shard key, and returns one of them, or None for "none of these will do"
(the client then waits, within bounds, for the set to change). The runtime plugs its
slice-assignment balancer in here; the two shipped ones need no assignment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Balancer", "HashBalancer", "RoundRobin"]


class Balancer(Protocol):
    """Picks a replica for one call. Must be cheap and must not block: it runs on every
    call. ``shard_key`` is 0 for calls without a routing key."""

    def pick(self, endpoints: Sequence[str], shard_key: int) -> str | None: ...


class RoundRobin:
    """Each endpoint in turn; ignores the shard key."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, endpoints: Sequence[str], shard_key: int) -> str | None:
        if not endpoints:
            return None
        index = self._next
        self._next = index + 1
        return endpoints[index % len(endpoints)]


class HashBalancer:
    """Calls with the same nonzero shard key go to the same endpoint while it is live
    (rendezvous hashing: when an endpoint leaves, only its keys move); shard key 0 goes
    round robin."""

    __slots__ = ("_round_robin",)

    def __init__(self) -> None:
        self._round_robin = RoundRobin()

    def pick(self, endpoints: Sequence[str], shard_key: int) -> str | None:
        if not shard_key or len(endpoints) < 2:
            return self._round_robin.pick(endpoints, shard_key)
        key = (shard_key & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")
        return max(endpoints, key=lambda endpoint: _weight(key, endpoint))


def _weight(key: bytes, endpoint: str) -> bytes:
    return hashlib.blake2b(key + endpoint.encode(), digest_size=8).digest()
