"""The process's lifetime: where a weavelet's services live once ``weaver.init()`` returned.

``init`` must return to ``main`` while the weavelet keeps serving, so its services cannot
live in a task group of the caller. They live in one *root task* owned by the event loop
itself — a trio system task (a child of trio's system nursery), or an asyncio task that
``asyncio.run`` cancels and waits for when ``main`` ends — and inside it in a task group,
as everywhere else.

The loop cancels the root task when ``main`` returns, raises, or is interrupted (SIGINT,
or SIGTERM routed like it by :mod:`._signals`). The body's ``finally`` then runs the
components' ``shutdown`` hooks (shielded), still in the app's own event loop and before
``anyio.run`` returns: one structured path for every way an app stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.abc
import sniffio

__all__ = ["start_root_task"]

T = TypeVar("T")

_logger = logging.getLogger("pyweaver.runtime")
_asyncio_roots: set[Any] = set()  # asyncio keeps only weak references to tasks


async def start_root_task(body: Callable[..., Coroutine[Any, Any, None]]) -> Any:
    """Run ``body(task_status=...)`` in the process's root task and return the value it
    passes to ``task_status.started()``; raise what it raised before that. ``body``
    runs until the event loop ends (see the module docstring)."""
    outcome: list[Any] = []
    failure: list[BaseException] = []
    ready = anyio.Event()

    async def root() -> None:
        try:
            async with anyio.create_task_group() as group:
                outcome.append(await group.start(body))
                ready.set()
        except Exception as exc:
            if ready.is_set():
                _logger.error("the weavelet's services failed", exc_info=exc)
            failure.append(exc)
        finally:
            ready.set()

    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(root)
    else:
        import asyncio

        task = asyncio.get_running_loop().create_task(root())
        _asyncio_roots.add(task)
        task.add_done_callback(_asyncio_roots.discard)
    await ready.wait()
    if not outcome:
        raise failure[0] if failure else RuntimeError("the weavelet stopped while starting")
    return outcome[0]
