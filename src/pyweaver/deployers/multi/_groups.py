"""Groups and replica slots: where each component runs, as plain data.

Components are placed in colocation groups: each ``colocate`` entry of weaver.toml is a
group named by its first component, every other component is a group of its own, and
``main`` belongs to the group that lists it (else a group ``main``). A group runs
``replicas`` weavelets, each filling one replica *slot* (``group#0``, ``group#1`` ...);
a slot outlives the weavelets that fill it, so a crashed weavelet is replaced in the
same slot (and, for a routed group, gets back exactly its keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio
import attrs

from pyweaver.contract import MAIN
from pyweaver.contract._config import AppConfig
from pyweaver.contract._routing import Assignment
from pyweaver.deployers.multi._pusher import Pusher
from pyweaver.envelope import Envelope

__all__ = ["DEFAULT_REPLICAS", "Group", "Slot", "group_layout"]

DEFAULT_REPLICAS: Final = 2


def group_layout(config: AppConfig, components: Sequence[str] = ()) -> dict[str, list[str]]:
    """Group name -> its components, from ``colocate``; ``components`` not listed get a
    group of their own, and ``main`` is always placed (group ``main`` if not listed)."""
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for entry in config.colocate:
        names = [name for name in entry if name not in seen]
        if names:
            groups[names[0]] = names
            seen.update(names)
    for name in [MAIN, *components]:
        if name not in seen:
            groups[name] = [name]
            seen.add(name)
    return groups


@attrs.define(eq=False)
class Slot:
    """One replica slot of a group and the weavelet filling it now."""

    group: Group
    index: int
    envelope: Envelope | None = None
    # starting | ready | unresponsive (fails health checks) | restarting | failed | stopped
    state: str = "starting"
    starts: int = 0
    last_exit: int | None = None
    replica_id: str = ""
    pusher: Pusher | None = None
    retired: bool = False  # removed by scale(): stop it, do not restart it
    unresponsive_count: int = 0  # times it was taken out of rotation by health checks
    task_started: bool = False  # a task keeps it filled ...
    finished: anyio.Event = attrs.Factory(anyio.Event)  # ... and has returned

    @property
    def id(self) -> str:
        return f"{self.group.name}#{self.index}"


@attrs.define(eq=False)
class Group:
    """A colocation group and its replica slots."""

    name: str
    components: list[str]
    replicas: int
    is_main: bool
    slots: list[Slot] = attrs.Factory(list)
    started: bool = False
    ready: anyio.Event = attrs.Factory(anyio.Event)
    error: str = ""
    degraded: str = ""  # why some slot keeps crashing (retried with backoff), if so
    activated: set[str] = attrs.Factory(set)
    routed: bool = False
    version: int = 0
    assignment: Assignment | None = None
    subscribers: dict[str, Slot] = attrs.Factory(dict)  # replica id -> subscribing slot
    moved_fractions: list[float] = attrs.Factory(list)

    def live(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.state == "ready" and slot.envelope]
