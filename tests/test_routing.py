"""Tests for pyweaver.contract._routing: shard keys and consistent slice assignments."""

from __future__ import annotations

import hashlib

import attrs
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyweaver._errors import RemoteProtocolError
from pyweaver.contract._routing import (
    GRID_BITS,
    Assignment,
    load_spread,
    moved_fraction,
    shard_key,
)

CELL = 1 / (1 << GRID_BITS)


@attrs.frozen
class UserKey:
    tenant: str
    user: int


class Plain:
    a: int = 1


def names(n: int) -> list[str]:
    return [f"replica-{i}" for i in range(n)]


def test_shard_key_recipe() -> None:
    expected = int.from_bytes(
        hashlib.sha256(cbor2.dumps("hello", canonical=True)).digest()[:8], "little"
    )
    assert shard_key("hello") == expected


def test_shard_key_types_are_stable_and_distinct() -> None:
    assert shard_key(7) == shard_key(7)
    assert shard_key(7) != shard_key(7.5)
    assert shard_key("7") != shard_key(7)
    assert shard_key(UserKey("a", 1)) == shard_key(UserKey("a", 1))
    assert shard_key(UserKey("a", 1)) != shard_key(UserKey("a", 2))
    assert 0 < shard_key(-1) < 2**64 - 1


def test_shard_key_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="router key"):
        shard_key(b"bytes")
    with pytest.raises(TypeError, match="router key"):
        shard_key(Plain())

    @attrs.frozen
    class Bad:
        blob: bytes

    with pytest.raises(TypeError, match=r"Bad\.blob"):
        shard_key(Bad(b"x"))


def test_empty_assignment() -> None:
    empty = Assignment.build([])
    assert empty.replicas == ()
    with pytest.raises(LookupError):
        empty.pick(5)
    assert Assignment.from_wire(empty.to_wire()) == empty


def test_single_replica_owns_everything() -> None:
    a = Assignment.build(["only"])
    assert a.slices == ((0, 0),)
    assert {a.pick(k) for k in (1, 2**63, 2**64 - 2)} == {"only"}
    assert a.version == 1


def test_fresh_assignment_is_contiguous_and_versioned() -> None:
    a = Assignment.build(["c", "a", "b"])
    assert a.replicas == ("a", "b", "c")
    assert len(a.slices) == 3
    b = Assignment.build(["a", "b", "c"], a)
    assert b.version == 2
    assert moved_fraction(a, b) == 0.0


@pytest.mark.parametrize("n", range(1, 9))
def test_adding_a_replica_moves_the_minimum(n: int) -> None:
    before = Assignment.build(names(n))
    after = Assignment.build(names(n + 1), before)
    assert moved_fraction(before, after) == pytest.approx(1 / (n + 1), abs=CELL)
    # Every moved key moved to the new replica.
    spread = load_spread(after)
    assert spread["replica-" + str(n)] == pytest.approx(moved_fraction(before, after))


@pytest.mark.parametrize("n", range(2, 9))
@pytest.mark.parametrize("victim", ["first", "last"])
def test_removing_a_replica_moves_only_its_keys(n: int, victim: str) -> None:
    before = Assignment.build(names(n))
    # Grow one replica at a time, as a deployer would, so ownership is fragmented.
    for k in range(1, n):
        before = Assignment.build(names(n)[: k + 1], before)
    gone = names(n)[0] if victim == "first" else names(n)[-1]
    after = Assignment.build([r for r in names(n) if r != gone], before)
    assert moved_fraction(before, after) == pytest.approx(load_spread(before)[gone])
    assert moved_fraction(before, after) == pytest.approx(1 / n, abs=CELL)


@pytest.mark.parametrize("n", range(1, 9))
def test_balance_within_one_cell(n: int) -> None:
    a = Assignment.build(names(1))
    for k in range(2, n + 1):
        a = Assignment.build(names(k), a)
    spread = load_spread(a)
    assert max(spread.values()) - min(spread.values()) <= CELL + 1e-12
    assert sum(spread.values()) == pytest.approx(1.0)


def test_sampled_moved_fraction_agrees_with_exact() -> None:
    a = Assignment.build(names(3))
    b = Assignment.build(names(4), a)
    assert moved_fraction(a, b, samples=20_000) == pytest.approx(moved_fraction(a, b), abs=0.02)


def test_same_key_same_replica() -> None:
    a = Assignment.build(names(4))
    keys = [shard_key(f"user-{i}") for i in range(200)]
    assert [a.pick(k) for k in keys] == [a.pick(k) for k in keys]
    assert len({a.pick(k) for k in keys}) == 4


def test_wire_round_trip_through_cbor() -> None:
    a = Assignment.build(names(3))
    b = Assignment.build(names(5), a)
    wire = cbor2.loads(cbor2.dumps(b.to_wire()))
    c = Assignment.from_wire(wire)
    assert c == b
    assert all(c.pick(k) == b.pick(k) for k in (1, 2**40, 2**63 + 5, 2**64 - 2))


@pytest.mark.parametrize(
    "wire",
    [
        {},
        {"version": 1, "replicas": ["a"], "slices": [[5, 0]]},
        {"version": 1, "replicas": ["a"], "slices": [[0, 1]]},
        {"version": 1, "replicas": ["a", "a"], "slices": [[0, 0]]},
        {"version": 1, "replicas": ["a", "b"], "slices": [[0, 0], [0, 1]]},
        {"version": -1, "replicas": ["a"], "slices": [[0, 0]]},
        {"version": 1, "replicas": [], "slices": [[0, 0]]},
        {"version": 1, "replicas": ["a"], "slices": [[0, 0, 1]]},
        {"version": 1, "replicas": ["a"], "slices": [[0, 0], [2**64, 0]]},
    ],
)
def test_malformed_wire_is_a_remote_protocol_error(wire: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Assignment.from_wire(wire)
    assert info.value.code == "bad-assignment"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 9), min_size=1, max_size=10), min_size=2, max_size=6))
def test_any_sequence_of_changes_stays_balanced_and_minimal(steps: list[set[int]]) -> None:
    a = Assignment.build([f"r{i}" for i in steps[0]])
    for step in steps[1:]:
        b = Assignment.build([f"r{i}" for i in step], a)
        spread = load_spread(b)
        assert max(spread.values()) - min(spread.values()) <= CELL + 1e-12
        # A key moves only if its owner left, or its owner was over the new fair share.
        before = load_spread(a)
        fair = 1 / len(step)
        lower_bound = sum(v for r, v in before.items() if r not in spread) + sum(
            max(0.0, v - fair - CELL) for r, v in before.items() if r in spread
        )
        upper_bound = sum(v for r, v in before.items() if r not in spread) + sum(
            max(0.0, v - fair + CELL) for r, v in before.items() if r in spread
        )
        assert lower_bound - 1e-9 <= moved_fraction(a, b) <= upper_bound + 1e-9
        assert b.version == a.version + 1
        a = b
