"""The manager: one named Ray actor per deployment holding who runs where.

Theory of operation
===================

The manager is the Ray deployer's registry, in the role of Service Weaver's ssh
manager, but it starts nothing: Ray places, restarts and moves the replica actors. It
holds, as plain data (:class:`ManagerState`, testable without Ray):

- the groups: components, whether routed, and their replica *slots* (``group#0``,
  ``group#1`` ...; one replica actor per slot, restarted by Ray in the same slot);
- for each slot, the replica that fills it now (data address on its node's IP, node,
  pids, listener addresses), with a *lease*: a replica renews it every second; one
  that stops renewing (its process died, its host was cut off) is dropped after
  ``lease`` seconds, before Ray has even noticed;
- each group's routing info, versioned, with a deterministic :class:`Assignment`
  over the group's slots for routed groups (fixed for the deployment's life, so a
  replica restarted in its slot gets back exactly its keys; while a slot is empty,
  callers route its keys to a live stand-in);
- the listener proxies' addresses, and a bounded buffer of the replicas' log entries
  and spans that the deploying process drains into the log store;
- whether the deployment is over: stopped by name (``pyweaver ray stop``), or main
  returned (its exit status, :meth:`ManagerState.main_exited`). The deploying process
  follows the manager and ends the deployment in both cases, as ``multi`` does.

Subscribers *long-poll*: :meth:`ManagerActor.routing` answers as soon as the group's
version passes the caller's, or after ``timeout`` seconds with the same version. There
is no background task: leases are checked on every call, and long-polls wake every
half second to check them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from pyweaver.contract._routing import Assignment

__all__ = ["LEASE", "ManagerActor", "ManagerState", "slot_ids"]

LEASE: Final = 6.0  # seconds a replica stays listed without renewing
_LOG_BUFFER: Final = 50_000  # log entries kept for the deploying process to drain
_SPAN_BUFFER: Final = 20_000


def slot_ids(group: str, replicas: int) -> list[str]:
    return [f"{group}#{index}" for index in range(replicas)]


@attrs.define
class _Group:
    name: str
    components: list[str]
    routed: bool
    slots: list[str]
    version: int = 1
    assignment: Assignment | None = None


@attrs.define
class _Replica:
    slot: str
    record: dict[str, Any]
    renewed: float
    incarnation: int


class ManagerState:
    """Groups, slots, replicas, routing, listeners and buffered telemetry (see the
    module docstring); ``clock`` is injectable for tests."""

    def __init__(
        self,
        *,
        deployment_id: str,
        app: str,
        groups: Mapping[str, Sequence[str]],
        replicas: Mapping[str, int],
        routed: Sequence[str],
        lease: float = LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deployment_id = deployment_id
        self.app = app
        self.lease = lease
        self.clock = clock
        self.started = time.time()
        self.groups: dict[str, _Group] = {}
        for name, components in groups.items():
            is_routed = any(c in routed for c in components)
            slots = slot_ids(name, replicas[name])
            self.groups[name] = _Group(
                name=name,
                components=list(components),
                routed=is_routed,
                slots=slots,
                assignment=Assignment.build(slots) if is_routed else None,
            )
        self.replicas: dict[str, _Replica] = {}
        self.starts: collections.Counter[str] = collections.Counter()
        self.errors: dict[str, str] = {}
        self.proxies: dict[str, str] = {}
        self.epoch = 1  # bumped on every change of any group or listener backend
        self.stopping = False
        self.main_status: int | None = None  # main's exit status, once it returned
        self.logs: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=_LOG_BUFFER
        )
        self.spans: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=_SPAN_BUFFER
        )
        self.sequence = 0
        self.dropped = 0

    def _group_of_slot(self, slot: str) -> _Group:
        group = self.groups.get(slot.rpartition("#")[0])
        if group is None or slot not in group.slots:
            raise KeyError(f"{slot!r} is no replica slot of deployment {self.deployment_id}")
        return group

    def _changed(self, group: _Group) -> None:
        group.version += 1
        self.epoch += 1

    # -- replicas -------------------------------------------------------------------------

    def register(self, slot: str, record: Mapping[str, Any]) -> int:
        """The replica filling ``slot`` is up (a restarted one replaces the old); returns
        its incarnation (how many replicas have filled the slot so far)."""
        group = self._group_of_slot(slot)
        self.starts[slot] += 1
        self.errors.pop(slot, None)
        self.replicas[slot] = _Replica(
            slot=slot, record=dict(record), renewed=self.clock(), incarnation=self.starts[slot]
        )
        self._changed(group)
        return self.starts[slot]

    def renew(self, slot: str, incarnation: int) -> bool:
        """Renew the lease; False if that replica is no longer listed (re-register)."""
        replica = self.replicas.get(slot)
        if replica is None or replica.incarnation != incarnation:
            return False
        replica.renewed = self.clock()
        return True

    def failed(self, slot: str, error: str) -> None:
        """The replica of ``slot`` could not start (Ray will try again)."""
        self.errors[slot] = error
        if self.replicas.pop(slot, None) is not None:
            self._changed(self._group_of_slot(slot))

    def main_exited(self, slot: str, status: int) -> None:
        """Main (in replica ``slot``) returned with exit ``status``: the deployment is
        over. The first status counts."""
        self._group_of_slot(slot)
        if self.main_status is None:
            self.main_status = status
            self.epoch += 1

    def expire(self) -> list[str]:
        """Drop the replicas whose lease ran out; their slots."""
        now = self.clock()
        gone = [slot for slot, r in self.replicas.items() if now - r.renewed > self.lease]
        for slot in gone:
            del self.replicas[slot]
            self._changed(self._group_of_slot(slot))
        return gone

    def export_listener(self, slot: str, name: str, address: str) -> str:
        """Replica ``slot`` serves listener ``name`` at ``address``; the proxy's address."""
        replica = self.replicas.get(slot)
        if replica is not None:
            replica.record.setdefault("listeners", {})[name] = address
            self.epoch += 1
        return self.proxies.get(name, "")

    # -- what subscribers read ------------------------------------------------------------

    def routing(self, group_name: str) -> dict[str, Any]:
        """``group_name``'s routing info (``RoutingInfo`` fields, plain data)."""
        group = self.groups[group_name]
        replicas = {
            slot: self.replicas[slot].record["data_address"]
            for slot in group.slots
            if slot in self.replicas
        }
        return {
            "group": group.name,
            "components": list(group.components),
            "version": group.version,
            "replicas": replicas,
            "assignment": group.assignment.to_wire() if group.assignment is not None else None,
            "error": "",
        }

    def backends(self) -> dict[str, list[str]]:
        """Listener name -> the ``host:port`` of every listed replica serving it."""
        found: dict[str, list[str]] = {}
        for slot in sorted(self.replicas):
            for name, address in self.replicas[slot].record.get("listeners", {}).items():
                found.setdefault(name, []).append(address)
        return found

    def snapshot(self) -> dict[str, Any]:
        """Everything the deploying process shows (status) and needs (proxy backends)."""
        groups = []
        for group in self.groups.values():
            replicas = []
            for slot in group.slots:
                replica = self.replicas.get(slot)
                record = replica.record if replica is not None else {}
                state = "ready" if replica is not None else "starting"
                if replica is None and slot in self.errors:
                    state = "failed"
                elif replica is None and self.starts[slot]:
                    state = "restarting"
                replicas.append(
                    {
                        "slot": slot,
                        "replica": record.get("replica_id", ""),
                        "pid": record.get("weavelet_pid", 0),
                        "actor_pid": record.get("actor_pid", 0),
                        "node_ip": record.get("node_ip", ""),
                        "address": record.get("data_address", ""),
                        "state": state,
                        "starts": self.starts[slot],
                        "error": self.errors.get(slot, ""),
                    }
                )
            groups.append(
                {
                    "name": group.name,
                    "components": list(group.components),
                    "routed": group.routed,
                    "version": group.version,
                    "replicas": replicas,
                }
            )
        return {
            "deployment": self.deployment_id,
            "app": self.app,
            "started": self.started,
            "epoch": self.epoch,
            "stopping": self.stopping,
            "main_status": self.main_status,
            "groups": groups,
            "proxies": dict(self.proxies),
            "backends": self.backends(),
        }

    # -- telemetry ------------------------------------------------------------------------

    def push(self, logs: Sequence[dict[str, Any]], spans: Sequence[dict[str, Any]]) -> None:
        for buffer, items in ((self.logs, logs), (self.spans, spans)):
            for item in items:
                if len(buffer) == buffer.maxlen:
                    self.dropped += 1
                self.sequence += 1
                buffer.append((self.sequence, item))

    def drain(self, after: int, limit: int = 5000) -> dict[str, Any]:
        """Buffered entries with a sequence number above ``after`` (at most ``limit``
        in all, oldest first), and the sequence to ask after next."""
        taken = sorted(
            [(seq, "logs", item) for seq, item in self.logs if seq > after]
            + [(seq, "spans", item) for seq, item in self.spans if seq > after],
            key=lambda taken: taken[0],
        )[:limit]
        return {
            "logs": [item for _, kind, item in taken if kind == "logs"],
            "spans": [item for _, kind, item in taken if kind == "spans"],
            "next": taken[-1][0] if taken else after,
            "dropped": self.dropped,
        }


class ManagerActor:
    """The Ray actor around :class:`ManagerState` (an async actor: long-polls wait on
    Ray's event loop without holding a thread)."""

    def __init__(self, **state: Any) -> None:
        self.state = ManagerState(**state)
        self._change = asyncio.Event()

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    def _expire(self) -> None:
        if self.state.expire():
            self._notify()

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + min(timeout, 30.0)
        while not done() and time.monotonic() < deadline:
            change = self._change
            try:
                await asyncio.wait_for(change.wait(), timeout=0.5)
            except TimeoutError:
                pass
            self._expire()

    async def register(self, slot: str, record: dict[str, Any]) -> int:
        incarnation = self.state.register(slot, record)
        self._notify()
        return incarnation

    async def renew(self, slot: str, incarnation: int) -> bool:
        self._expire()
        return self.state.renew(slot, incarnation)

    async def failed(self, slot: str, error: str) -> None:
        self.state.failed(slot, error)
        self._notify()

    async def main_exited(self, slot: str, status: int) -> None:
        self.state.main_exited(slot, status)
        self._notify()

    async def export_listener(self, slot: str, name: str, address: str) -> str:
        proxy = self.state.export_listener(slot, name, address)
        self._notify()
        return proxy

    async def routing(self, group: str, after: int, timeout: float) -> dict[str, Any]:
        """``group``'s routing info once its version is above ``after``, or after
        ``timeout`` seconds as it stands."""
        state = self.state
        self._expire()
        await self._wait(lambda: state.groups[group].version > after, timeout)
        return state.routing(group)

    async def snapshot(self, after: int, timeout: float) -> dict[str, Any]:
        """The whole state once its epoch is above ``after`` (or after ``timeout``)."""
        state = self.state
        self._expire()
        await self._wait(lambda: state.epoch > after or state.stopping, timeout)
        return state.snapshot()

    async def set_proxies(self, proxies: dict[str, str]) -> None:
        self.state.proxies = dict(proxies)

    async def push(self, logs: list[dict[str, Any]], spans: list[dict[str, Any]]) -> None:
        self.state.push(logs, spans)

    async def drain(self, after: int) -> dict[str, Any]:
        return self.state.drain(after)

    async def request_stop(self) -> None:
        self.state.stopping = True
        self._notify()

    async def slots(self) -> list[str]:
        return [slot for group in self.state.groups.values() for slot in group.slots]

    async def describe(self) -> dict[str, Any]:
        return {"deployment": self.state.deployment_id, "app": self.state.app}
