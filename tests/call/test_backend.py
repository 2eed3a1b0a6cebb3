"""The backend primitives (``pyweaver.call._backend``): the caller's effective deadline
is read by walking the cancel scopes (anyio's on asyncio, trio's cancel statuses on
trio) by their slots (issue 8); it must agree with ``anyio.current_effective_deadline()``
everywhere: no scope, nested task groups, deadlines at several levels (absolute and
relative), shields, cancelled scopes and passed deadlines."""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
import pytest

from pyweaver.call._backend import _anyio_task_states, current_backend

pytestmark = pytest.mark.anyio


def agrees(ours: Callable[[], float]) -> float:
    theirs = anyio.current_effective_deadline()
    assert ours() == theirs
    return theirs


async def test_the_walkers_are_used_on_this_anyio_and_trio() -> None:
    import trio

    assert _anyio_task_states() is not None  # what _scope_walker walks
    assert current_backend().effective_deadline not in (
        anyio.current_effective_deadline,
        trio.current_effective_deadline,
    )


async def test_the_deadline_agrees_with_anyio_in_every_kind_of_scope() -> None:
    ours = current_backend().effective_deadline
    now = anyio.current_time()
    seen: list[float] = []

    async def nested(depth: int) -> None:
        if depth:
            async with anyio.create_task_group() as group:
                group.start_soon(nested, depth - 1)
            return
        seen.append(agrees(ours))
        with anyio.CancelScope(deadline=now + 50):
            seen.append(agrees(ours))
            with anyio.CancelScope(deadline=now + 100):  # the outer one is sooner
                seen.append(agrees(ours))
                with anyio.CancelScope(shield=True):  # hides both
                    seen.append(agrees(ours))
                    with anyio.CancelScope(deadline=now + 200):
                        seen.append(agrees(ours))
        with anyio.CancelScope() as cancelled:
            cancelled.cancel()
            seen.append(agrees(ours))
            with anyio.CancelScope(shield=True):
                seen.append(agrees(ours))
        with anyio.move_on_after(-1):  # already past
            seen.append(agrees(ours))
        with anyio.fail_after(5):  # relative, until entered (trio)
            seen.append(agrees(ours) - anyio.current_time())

    with anyio.CancelScope(deadline=now + 20):  # the deadline above the task groups
        async with anyio.create_task_group() as group:
            group.start_soon(nested, 4)
    assert seen == [
        now + 20,
        now + 20,
        now + 20,
        math.inf,
        now + 200,
        -math.inf,
        math.inf,
        -math.inf,
        pytest.approx(5, abs=1),  # sooner than the outer one
    ]
    agrees(ours)  # the test's own task, outside every scope above
