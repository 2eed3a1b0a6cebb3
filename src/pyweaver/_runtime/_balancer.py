"""The routing balancer: which replica of a group gets a call.

Unrouted calls (shard key 0) go to the less loaded of two live replicas (the power of
two choices: two picked in turn, round robin, the one with fewer calls in flight wins,
ties to the first), once the call client's in-flight counts are plugged in
(:attr:`SlotBalancer.load`); without them, round robin. A replica that stops answering
(a hung process) piles up calls in flight, so it soon gets almost none of the new ones,
while healthy replicas share the load evenly. Two choices rather than the global
minimum: scanning every replica would cost O(replicas) per call and send every caller's
burst to the same momentary minimum. A routed call goes to the replica slot that
owns its key in the group's routing assignment (:class:`~pyweaver.contract.Assignment`).

A freshly started weavelet has no connection yet to most replicas, and may not have the
assignment yet either. Sending a routed call to "some live replica" then would break
the one promise routing makes (same key, same replica) exactly when a new caller starts.
So while the owner of a key is a replica this balancer has known for less than
``owner_grace`` seconds (it is still being connected), or while no assignment has
arrived within that time of the balancer's start, :meth:`SlotBalancer.pick` answers
None and the call client waits for a change of live connections (bounded by its
replica wait and the caller's deadline). Only after the grace, when the owner is down
(restarting, say), does the call go to a live stand-in chosen by the key, so one key
keeps landing on one stand-in until the owner is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from pyweaver.call import RoundRobin
from pyweaver.contract import _messages as m
from pyweaver.contract._routing import Assignment

__all__ = ["OWNER_GRACE", "SlotBalancer"]

#: Seconds a routed call waits for its key's owner (or the first assignment) to be
#: connected before it falls back to a stand-in replica.
OWNER_GRACE: Final = 3.0


class SlotBalancer:
    """Routes calls to the replicas of one group (see the module docstring).

    Args:
        owner_grace: seconds a routed call waits for its owner to be connected.
        clock: monotonic seconds (injectable for tests).
    """

    __slots__ = (
        "_addresses",
        "_assignment",
        "_clock",
        "_grace",
        "_next",
        "_round_robin",
        "_seen",
        "_started",
        "load",
    )

    def __init__(
        self, owner_grace: float = OWNER_GRACE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._assignment: Assignment | None = None
        self._addresses: dict[str, str] = {}  # replica slot -> its address
        self._seen: dict[str, float] = {}  # address -> when this balancer first knew it
        self._round_robin = RoundRobin()
        self._grace = owner_grace
        self._clock = clock
        self._started = clock()
        self._next = 0
        self.load: Callable[[str], int] | None = None
        """Calls in flight per endpoint (e.g. ``call.Client.in_flight``); None: round robin."""

    def update(self, info: m.RoutingInfo) -> None:
        now = self._clock()
        self._addresses = dict(info.replicas)
        for address in self._addresses.values():
            self._seen.setdefault(address, now)
        self._assignment = (
            Assignment.from_wire(info.assignment) if info.assignment is not None else None
        )

    def pick(self, endpoints: Sequence[str], shard_key: int) -> str | None:
        """The endpoint for a call among the live ``endpoints``; None means "wait for
        the live endpoints to change, then ask again"."""
        if not endpoints:
            return None
        if shard_key:
            assignment = self._assignment
            if assignment is not None and assignment.replicas:
                address = self._addresses.get(assignment.pick(shard_key))
                if address is not None:
                    if address in endpoints:
                        return address
                    if self._clock() - self._seen.get(address, self._started) < self._grace:
                        return None  # the owner is still being connected: wait for it
                return endpoints[shard_key % len(endpoints)]
            if self._clock() - self._started < self._grace:
                return None  # no assignment yet: wait for the first one
            return endpoints[shard_key % len(endpoints)]
        count = len(endpoints)
        if count == 1:
            return endpoints[0]
        load = self.load
        if load is None:
            return self._round_robin.pick(endpoints, 0)
        index = self._next
        self._next = index + 1
        first = endpoints[index % count]
        second = endpoints[(index + 1 + (index // count) % (count - 1)) % count]
        return second if load(second) < load(first) else first
