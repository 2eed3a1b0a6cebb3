"""The few async primitives the call protocol needs, fast on each backend.

The client and server are written once against this small surface, so their public API
is the same on asyncio and trio; each primitive maps to the cheapest native thing:

=================  ==============================  ==================================
primitive          asyncio                         trio
=================  ==============================  ==================================
``new_future()``   ``loop.create_future()``        :class:`TrioFuture` (parks the task
                                                   with ``wait_task_rescheduled``)
``cancel_scope``   :class:`anyio.CancelScope`      :class:`trio.CancelScope`
``clock()``        ``loop.time``                   ``trio.current_time``
``set_deadline``   sets the deadline without       ``scope.deadline = d``
                   arming its timer (see below)
=================  ==============================  ==================================

Both cancel-scope types are what anyio code inside a handler sees, so
``anyio.current_effective_deadline()`` works there on either backend.

``set_deadline(scope, d)`` is for the server's dispatcher, which runs a request inline
until its handler first suspends: nothing can cancel a handler that never suspends, so
on asyncio the deadline is only recorded (what ``current_effective_deadline()`` and
nested calls read), and the dispatcher arms it with ``scope.deadline = d`` if the
handler suspends. That saves a ``call_at`` timer and its cancellation per request (the
default call deadline gives every request one). On trio, or an anyio whose scope does
not look as expected, it is the plain setter.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

import anyio
import sniffio

__all__ = ["Backend", "FutureLike", "Scope", "TrioFuture", "current_backend", "use_uvloop"]

T = TypeVar("T")


class FutureLike(Protocol[T]):
    """What asyncio.Future and TrioFuture share: set once, awaited by one task."""

    def done(self) -> bool: ...
    def set_result(self, result: T, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def __await__(self) -> Generator[Any, None, T]: ...


class Scope(Protocol):
    """What anyio.CancelScope and trio.CancelScope share."""

    @property
    def cancelled_caught(self) -> bool: ...
    @property
    def deadline(self) -> float: ...
    @deadline.setter
    def deadline(self, value: float) -> None: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: Any) -> bool | None: ...


class Backend:
    """The primitives of the running async library (see the module docstring)."""

    __slots__ = (
        "clock",
        "effective_deadline",
        "name",
        "new_future",
        "new_scope",
        "set_deadline",
    )

    def __init__(
        self,
        name: str,
        new_future: Callable[[], FutureLike[Any]],
        new_scope: Callable[[float], Scope],
        clock: Callable[[], float],
        effective_deadline: Callable[[], float],
        *,
        set_deadline: Callable[[Scope, float], None] | None = None,
    ) -> None:
        self.name = name
        self.new_future = new_future
        self.new_scope = new_scope
        self.clock = clock
        self.effective_deadline = effective_deadline
        self.set_deadline = set_deadline if set_deadline is not None else _set_deadline


def _set_deadline(scope: Scope, deadline: float) -> None:
    scope.deadline = deadline


def _record_deadline(scope: Scope, deadline: float) -> None:
    scope._deadline = deadline  # type: ignore[attr-defined]


def _asyncio_set_deadline(scope_class: Callable[..., Scope]) -> Callable[[Scope, float], None]:
    """The recording setter when anyio's asyncio scope keeps its deadline in
    ``_deadline`` and arms it with ``_timeout`` (anyio 4), else the plain setter."""
    probe = scope_class()
    if all(hasattr(probe, name) for name in ("_deadline", "_timeout", "_timeout_handle")):
        return _record_deadline
    return _set_deadline  # pragma: no cover - a future anyio


class TrioFuture:
    """A one-shot result for one waiting trio task, without trio.Event's overhead."""

    __slots__ = ("_outcome", "_task")

    def __init__(self) -> None:
        import outcome

        self._task: Any = None
        self._outcome: outcome.Outcome[Any] | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def set_result(self, result: Any, /) -> None:
        if self._outcome is None:
            import outcome

            self._resolve(outcome.Value(result))

    def set_exception(self, exception: BaseException, /) -> None:
        if self._outcome is None:
            import outcome

            self._resolve(outcome.Error(exception))

    def _resolve(self, result: Any) -> None:
        import trio

        self._outcome = result
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    def __await__(self) -> Generator[Any, None, Any]:
        import trio

        if self._outcome is not None:
            return self._outcome.unwrap()
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return (yield from trio.lowlevel.wait_task_rescheduled(abort).__await__())  # noqa: ASYNC105


# anyio.CancelScope() dispatches to the running backend's class on every call; the
# asyncio driver calls that class directly.
_asyncio_scope_class: Callable[..., Scope] | None = None
_asyncio_deadline_setter: Callable[[Scope, float], None] = _set_deadline


def _asyncio_effective_deadline() -> Callable[[], float]:
    """anyio.current_effective_deadline without its per-call backend lookup."""
    try:
        from anyio._core._eventloop import get_async_backend

        return get_async_backend().current_effective_deadline
    except (ImportError, AttributeError):  # pragma: no cover - a future anyio
        return anyio.current_effective_deadline


def current_backend() -> Backend:
    """The primitives for the async library running this task."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        global _asyncio_scope_class, _asyncio_deadline_setter
        if _asyncio_scope_class is None:
            _asyncio_scope_class = type(anyio.CancelScope())
            _asyncio_deadline_setter = _asyncio_set_deadline(_asyncio_scope_class)
        scope_class = _asyncio_scope_class

        def asyncio_scope(deadline: float) -> Scope:
            return scope_class(deadline=deadline)

        loop = asyncio.get_running_loop()
        return Backend(
            "asyncio",
            loop.create_future,
            asyncio_scope,
            loop.time,
            _asyncio_effective_deadline(),
            set_deadline=_asyncio_deadline_setter,
        )
    if library == "trio":
        import trio

        def trio_scope(deadline: float) -> Scope:
            return trio.CancelScope(deadline=deadline)

        return Backend(
            "trio", TrioFuture, trio_scope, trio.current_time, trio.current_effective_deadline
        )
    raise RuntimeError(f"pyweaver.call does not support the {library!r} async library")


def use_uvloop(enabled: bool | None = None) -> dict[str, Any]:
    """anyio ``backend_options`` that run asyncio on uvloop when it is installed::

        anyio.run(main, backend_options=call.use_uvloop())

    ``enabled=None`` follows the environment: uvloop unless ``PYWEAVER_UVLOOP=0``.
    Returns ``{}`` (plain asyncio) when uvloop is not installed or not enabled.
    """
    if enabled is None:
        enabled = os.environ.get("PYWEAVER_UVLOOP", "1") not in ("", "0", "false", "no")
    if not enabled:
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
