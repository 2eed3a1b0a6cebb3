"""Routing: router keys to shard keys, and shard keys to replicas.

A routed component method (``weaver.WithRouter``) returns a *router key* for each call.
The caller turns it into a 64-bit *shard key* with :func:`shard_key` and asks the
component's current :class:`Assignment` which replica owns that key. Same key, same
replica, as long as the replica set does not change; routing is best effort and never a
correctness guarantee.

Shard key (same recipe as Service Weaver's ``runtime/codegen/hash.go``, with CBOR in
place of the Go encoding)::

    key (int | float | str | attrs instance of those; attrs -> tuple of its fields)
      -> canonical CBOR (cbor2, canonical=True)
      -> SHA-256
      -> first 8 bytes, little-endian unsigned
      -> 0 becomes 1 (0 means "not routed"), 2**64-1 becomes 2**64-2

Theory of operation of the assignment. Go's local deployers cut the key space into
equal slices and deal them out afresh whenever the replica set changes, so adding one
replica moves a large share of the keys and every cache warmed by routing goes cold.
Here the key space is a fixed grid of ``2**GRID_BITS`` equal cells and ownership is
*sticky*: :meth:`Assignment.build` starts from the previous owner of each cell, hands the
cells of removed replicas to the least loaded survivors, and moves cells off replicas
that are above their fair share (``cells // n`` or one more) onto replicas below it, and
nothing else. Adding a replica to ``n`` therefore moves ``1/(n+1)`` of the key space and
removing one moves ``1/n``: the minimum possible. With 1024 cells the busiest replica
owns at most one cell more than the least busy one.

On the wire (and in memory) an assignment is ordered slices: ``(start, replica index)``
pairs; slice ``i`` covers ``[start_i, start_{i+1})`` and the last one ends at ``2**64``.
Neighbouring cells with the same owner are merged, so a fresh assignment of ``n``
replicas is ``n`` slices. :meth:`Assignment.pick` is one ``bisect`` over the starts.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cbor2

from pyweaver._errors import RemoteProtocolError

__all__ = [
    "GRID_BITS",
    "Assignment",
    "load_spread",
    "moved_fraction",
    "shard_key",
]

_U64 = 1 << 64
GRID_BITS = 10
_CELLS = 1 << GRID_BITS
_CELL_WIDTH = _U64 >> GRID_BITS


def _key_value(key: object) -> object:
    # bool is an int subclass, but True and 1 encode differently in CBOR; they are
    # accepted as ints would be, the encoding keeps them distinct.
    if isinstance(key, int | float | str):
        return key
    if attrs.has(type(key)):
        values = attrs.astuple(key, recurse=False)  # type: ignore[arg-type]
        for field, value in zip(attrs.fields(type(key)), values, strict=True):  # type: ignore[arg-type]
            if not isinstance(value, int | float | str):
                raise TypeError(
                    f"router key field {type(key).__qualname__}.{field.name} is a "
                    f"{type(value).__qualname__}; router key fields must be int, float or str"
                )
        return values
    raise TypeError(
        f"a router key must be int, float, str or an attrs class of those, "
        f"not {type(key).__qualname__}"
    )


def shard_key(key: object) -> int:
    """The 64-bit shard key of a router key. Never 0 (0 means "not routed")."""
    encoded = cbor2.dumps(_key_value(key), canonical=True)
    value = int.from_bytes(hashlib.sha256(encoded).digest()[:8], "little")
    if value == 0:
        return 1
    if value == _U64 - 1:
        return _U64 - 2
    return value


@attrs.frozen(kw_only=True)
class Assignment:
    """Which replica owns which part of the shard key space, at one version.

    Attributes:
        version: increases by one with every :meth:`build` from a previous assignment.
        replicas: the replica ids, sorted.
        slices: ``(start, replica index)`` pairs, starts strictly increasing from 0;
            empty when there are no replicas.
    """

    version: int
    replicas: tuple[str, ...]
    slices: tuple[tuple[int, int], ...]
    _starts: list[int] = attrs.field(init=False, eq=False, repr=False)
    _owners: list[str] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_starts", [start for start, _ in self.slices])
        object.__setattr__(self, "_owners", [self.replicas[i] for _, i in self.slices])

    def pick(self, key: int) -> str:
        """The replica that owns shard key ``key``. Raises LookupError with no replicas."""
        owners = self._owners
        if not owners:
            raise LookupError("the assignment has no replicas")
        return owners[bisect.bisect_right(self._starts, key) - 1]

    @classmethod
    def build(cls, replicas: Sequence[str], previous: Assignment | None = None) -> Assignment:
        """The next assignment for ``replicas``, moving as few keys from ``previous``
        as possible while keeping every replica within one cell of its fair share."""
        names = tuple(sorted(set(replicas)))
        version = previous.version + 1 if previous is not None else 1
        if not names:
            return cls(version=version, replicas=(), slices=())
        alive = set(names)
        owners: list[str | None] = [None] * _CELLS
        if previous is not None and previous.replicas:
            for cell in range(_CELLS):
                owner = previous.pick(cell * _CELL_WIDTH)
                owners[cell] = owner if owner in alive else None
        if all(owner is None for owner in owners):
            # Nothing to keep: contiguous equal ranges, in name order.
            owners = [names[cell * len(names) // _CELLS] for cell in range(_CELLS)]
        else:
            _rebalance(owners, names)
        return cls._from_cells(version, names, owners)

    @classmethod
    def _from_cells(
        cls, version: int, names: tuple[str, ...], owners: Sequence[str | None]
    ) -> Assignment:
        index = {name: i for i, name in enumerate(names)}
        slices: list[tuple[int, int]] = []
        for cell, owner in enumerate(owners):
            assert owner is not None
            if not slices or names[slices[-1][1]] != owner:
                slices.append((cell * _CELL_WIDTH, index[owner]))
        return cls(version=version, replicas=names, slices=tuple(slices))

    def to_wire(self) -> dict[str, Any]:
        """Plain data for the CBOR codec."""
        return {
            "version": self.version,
            "replicas": list(self.replicas),
            "slices": [[start, i] for start, i in self.slices],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Assignment:
        """The inverse of :meth:`to_wire`; malformed data is a RemoteProtocolError."""
        try:
            version = data["version"]
            replicas = tuple(data["replicas"])
            slices = tuple((int(start), int(i)) for start, i in data["slices"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteProtocolError(
                f"malformed routing assignment: {exc!r}", code="bad-assignment"
            ) from exc
        problem = _check(version, replicas, slices)
        if problem:
            raise RemoteProtocolError(
                f"malformed routing assignment: {problem}", code="bad-assignment"
            )
        return cls(version=version, replicas=replicas, slices=slices)


def _check(version: object, replicas: tuple[Any, ...], slices: tuple[tuple[int, int], ...]) -> str:
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return f"version {version!r} is not a non-negative int"
    if not all(isinstance(r, str) for r in replicas) or len(set(replicas)) != len(replicas):
        return "replicas must be distinct strings"
    if replicas and (not slices or slices[0][0] != 0):
        return "the first slice must start at 0"
    if not replicas and slices:
        return "slices without replicas"
    previous = -1
    for start, i in slices:
        if not previous < start < _U64:
            return f"slice start {start} is out of order or range"
        if not 0 <= i < len(replicas):
            return f"slice replica index {i} is out of range"
        previous = start
    return ""


def _rebalance(owners: list[str | None], names: tuple[str, ...]) -> None:
    """Give every cell an owner, moving the fewest cells that brings each replica to
    its quota (``cells // n``, plus one for the ``cells % n`` replicas that already own
    the most, so that they need not give a cell away)."""
    counts = dict.fromkeys(names, 0)
    for owner in owners:
        if owner is not None:
            counts[owner] += 1
    base, extra = divmod(_CELLS, len(names))
    by_load = sorted(names, key=lambda name: (-counts[name], name))
    quota = {name: base + (1 if rank < extra else 0) for rank, name in enumerate(by_load)}

    pool = [cell for cell, owner in enumerate(owners) if owner is None]
    for name in names:
        surplus = counts[name] - quota[name]
        if surplus > 0:
            # Give away the highest cells, so a contiguous range stays contiguous.
            mine = [cell for cell, owner in enumerate(owners) if owner == name]
            pool.extend(mine[-surplus:])
    pool.sort()
    position = 0
    for name in names:
        deficit = quota[name] - min(counts[name], quota[name])
        for cell in pool[position : position + deficit]:
            owners[cell] = name
        position += deficit
    assert position == len(pool)


def _boundaries(assignment: Assignment) -> list[int]:
    return [start for start, _ in assignment.slices]


def moved_fraction(
    a: Assignment, b: Assignment, samples: int | None = None, seed: int = 0
) -> float:
    """The fraction of the shard key space owned by different replicas in ``a`` and
    ``b``: exact when ``samples`` is None, else estimated from ``samples`` random keys."""
    if not a.replicas or not b.replicas:
        return 1.0
    if samples is not None:
        rng = random.Random(seed)
        keys = [rng.randrange(1, _U64 - 1) for _ in range(samples)]
        return sum(a.pick(k) != b.pick(k) for k in keys) / samples
    points = sorted(set(_boundaries(a)) | set(_boundaries(b)))
    moved = 0
    for start, end in zip(points, [*points[1:], _U64], strict=True):
        if a.pick(start) != b.pick(start):
            moved += end - start
    return moved / _U64


def load_spread(assignment: Assignment) -> dict[str, float]:
    """The fraction of the shard key space each replica owns."""
    spread = dict.fromkeys(assignment.replicas, 0.0)
    starts = _boundaries(assignment)
    for (start, i), end in zip(assignment.slices, [*starts[1:], _U64], strict=True):
        spread[assignment.replicas[i]] += (end - start) / _U64
    return spread
