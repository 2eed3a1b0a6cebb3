"""Routing: what every subscriber of a group is told about where its components run.

A weavelet that asked for one of a group's components (``activate_component``) is a
*subscriber* of the group. Whenever the group's live replicas change, its routing info
(a new version) is pushed to every subscriber, through one :class:`~._pusher.Pusher` per
weavelet that only ever sends the newest info.

Routed components (``WithRouter``) get a slot :class:`Assignment`: the key space is
owned by replica slots, so a weavelet that restarts in its slot gets back exactly its
keys; while it is down, callers route its keys to a live stand-in chosen by the key.
The assignment changes only when the number of slots changes, and then stickily, moving
the fewest keys (the fraction moved is kept in :attr:`Group.moved_fractions`).
"""

from __future__ import annotations

from pyweaver.contract import messages as m
from pyweaver.contract._routing import Assignment, moved_fraction
from pyweaver.deployers.multi._groups import Group

__all__ = ["assign", "publish", "push_components", "routing_info"]


def routing_info(group: Group) -> m.RoutingInfo:
    """``group``'s routing info as it stands: its live replicas and assignment."""
    replicas = {
        slot.id: slot.envelope.data_address
        for slot in group.live()
        if slot.envelope is not None and slot.envelope.data_address
    }
    return m.RoutingInfo(
        group=group.name,
        components=list(group.components),
        version=group.version,
        replicas=replicas,
        assignment=group.assignment.to_wire() if group.assignment is not None else None,
        error=group.error,
    )


def publish(group: Group) -> None:
    """Push ``group``'s routing info (new version) to all its subscribers."""
    group.version += 1
    info = routing_info(group)
    for subscriber in list(group.subscribers.values()):
        if subscriber.pusher is not None:
            subscriber.pusher.push_routing(info)


def push_components(group: Group) -> None:
    """Tell every live replica of ``group`` which of its components to host."""
    wanted = sorted(group.activated & set(group.components))
    for slot in group.live():
        if slot.pusher is not None:
            slot.pusher.push_components(wanted)


def assign(group: Group) -> float | None:
    """(Re)build the routed assignment over the group's slots, stickily; the fraction
    of keys moved, None if nothing changed or there was no assignment before."""
    slots = [slot.id for slot in group.slots]
    previous = group.assignment
    if previous is not None and list(previous.replicas) == sorted(slots):
        return None
    group.assignment = Assignment.build(slots, previous)
    if previous is None:
        return None
    fraction = moved_fraction(previous, group.assignment)
    group.moved_fractions.append(fraction)
    return fraction
