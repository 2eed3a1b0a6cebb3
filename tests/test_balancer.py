"""The routing balancer of a deployed weavelet: routed calls go to their key's owner,
wait (boundedly) for an owner that is still being connected or for the first
assignment, and only then fall back to a stand-in chosen by the key."""

from __future__ import annotations

from pyweaver._runtime._balancer import SlotBalancer
from pyweaver.contract import Assignment
from pyweaver.contract import messages as m
from pyweaver.contract._routing import shard_key

ZERO, ONE = "unix:///zero", "unix:///one"
ADDRESS = {"g#0": ZERO, "g#1": ONE}
KEYS = [shard_key(f"k{i}") for i in range(200)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def routing(assignment: Assignment | None) -> m.RoutingInfo:
    return m.RoutingInfo(
        group="g",
        components=["g"],
        version=1,
        replicas=dict(ADDRESS),
        assignment=assignment.to_wire() if assignment is not None else None,
    )


def test_routed_calls_go_to_the_owner_and_unrouted_ones_round_robin() -> None:
    assignment = Assignment.build(["g#0", "g#1"])
    balancer = SlotBalancer()
    balancer.update(routing(assignment))
    live = [ONE, ZERO]
    for key in KEYS:
        assert balancer.pick(live, key) == ADDRESS[assignment.pick(key)]
    assert {balancer.pick(live, 0) for _ in range(4)} == set(live)
    assert balancer.pick([], 7) is None


def test_a_new_callers_routed_call_waits_for_its_owner_to_be_connected() -> None:
    # The defect: a freshly started weavelet had one live connection, and routed calls
    # whose owner was the other replica went to the live one (a wrong replica).
    clock = Clock()
    assignment = Assignment.build(["g#0", "g#1"])
    balancer = SlotBalancer(owner_grace=3.0, clock=clock)
    balancer.update(routing(assignment))
    owned_by_one = [key for key in KEYS if assignment.pick(key) == "g#1"]
    assert owned_by_one
    for key in owned_by_one:
        assert balancer.pick([ZERO], key) is None  # wait: "one" is still connecting
    clock.now += 3.5
    # The owner is down after the grace (restarting): one stand-in per key.
    for key in owned_by_one:
        assert balancer.pick([ZERO], key) == ZERO
        assert balancer.pick([ZERO], key) == balancer.pick([ZERO], key)


def test_routed_calls_wait_for_the_first_assignment_then_fall_back() -> None:
    clock = Clock()
    balancer = SlotBalancer(owner_grace=3.0, clock=clock)
    balancer.update(routing(None))
    assert balancer.pick([ZERO, ONE], KEYS[0]) is None
    assert balancer.pick([ZERO, ONE], 0) in (ZERO, ONE)  # unrouted calls never wait
    clock.now += 3.5
    assert balancer.pick([ZERO, ONE], KEYS[0]) in (ZERO, ONE)


def test_a_replica_added_later_gets_its_own_grace() -> None:
    clock = Clock()
    two = Assignment.build(["g#0", "g#1"])
    balancer = SlotBalancer(owner_grace=3.0, clock=clock)
    balancer.update(routing(two))
    clock.now += 60
    three = Assignment.build(["g#0", "g#1", "g#2"], two)
    info = routing(three)
    info = m.RoutingInfo(
        group="g",
        components=["g"],
        version=2,
        replicas={**ADDRESS, "g#2": "unix:///two"},
        assignment=three.to_wire(),
    )
    balancer.update(info)
    owned_by_two = [key for key in KEYS if three.pick(key) == "g#2"]
    assert owned_by_two
    assert balancer.pick([ZERO, ONE], owned_by_two[0]) is None


def test_unrouted_calls_avoid_the_replica_with_calls_piling_up() -> None:
    balancer = SlotBalancer()
    in_flight = {ZERO: 50, ONE: 0}  # ZERO is hung: its calls never finish
    balancer.load = in_flight.__getitem__
    picks = [balancer.pick([ZERO, ONE], 0) for _ in range(100)]
    assert picks.count(ONE) == 100


def test_unrouted_calls_spread_evenly_over_equally_loaded_replicas() -> None:
    balancer = SlotBalancer()
    endpoints = [f"unix:///r{i}" for i in range(5)]
    in_flight = dict.fromkeys(endpoints, 0)
    balancer.load = in_flight.__getitem__
    for _ in range(1000):
        picked = balancer.pick(endpoints, 0)
        assert picked is not None
        in_flight[picked] += 1  # calls that never finish: load keeps rising
    assert max(in_flight.values()) - min(in_flight.values()) <= 2


def test_without_load_counts_unrouted_calls_round_robin() -> None:
    balancer = SlotBalancer()
    assert [balancer.pick([ZERO, ONE], 0) for _ in range(4)] == [ZERO, ONE, ZERO, ONE]
