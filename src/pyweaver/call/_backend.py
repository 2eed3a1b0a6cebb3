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
import functools
import math
import os
import weakref
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


def _asyncio_effective_deadline(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """anyio.current_effective_deadline on ``loop``, without its per-call backend lookup,
    and walking the scopes by their slots (:func:`_scope_walker`) when it can."""
    walker = _scope_walker(loop)
    if walker is not None:
        return walker
    try:  # pragma: no cover - a future anyio
        from anyio._core._eventloop import get_async_backend

        return get_async_backend().current_effective_deadline
    except (ImportError, AttributeError):  # pragma: no cover - a future anyio
        return anyio.current_effective_deadline


def _current_task_getter(loop: asyncio.AbstractEventLoop) -> Callable[[], Any]:
    """asyncio.current_task() of ``loop``, without looking the running loop up per call:
    on Python 3.11 that lookup makes a ``getpid`` system call (its fork check)."""
    try:
        import _asyncio
    except ImportError:  # pragma: no cover - an asyncio without its C part
        return functools.partial(asyncio.current_task, loop)
    in_c: Callable[..., Any] | None = getattr(_asyncio, "current_task", None)  # 3.12+
    if in_c is not None:
        return functools.partial(in_c, loop)
    current_tasks: dict[Any, Any] | None = getattr(asyncio.tasks, "_current_tasks", None)
    if current_tasks is None:  # pragma: no cover - a future asyncio
        return functools.partial(asyncio.current_task, loop)
    return functools.partial(current_tasks.get, loop)


@functools.cache
def _anyio_task_states() -> Callable[[Any], Any] | None:
    """The lookup of an asyncio task's anyio state (by weak reference), when anyio's
    internals are as :func:`_scope_walker` expects; None otherwise. Checked once."""
    try:
        from anyio._backends import _asyncio as anyio_asyncio

        states = anyio_asyncio._task_states
        probe = anyio_asyncio.CancelScope()
        for name in ("_deadline", "_cancel_called", "_shield", "_parent_scope"):
            getattr(probe, name)
        task_state = anyio_asyncio.TaskState(None, probe)
        if task_state.cancel_scope is not probe or not isinstance(
            states, weakref.WeakKeyDictionary
        ):
            return None  # pragma: no cover - a future anyio
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - a future anyio
        return None
    return states.data.get  # type: ignore[attr-defined, no-any-return]


def _scope_walker(loop: asyncio.AbstractEventLoop) -> Callable[[], float] | None:
    """The walk anyio's ``current_effective_deadline`` does on asyncio, up the current
    task's cancel scopes, reading their slots instead of their properties: about 4x
    cheaper. A weavelet's tasks sit under several task groups, and every remote call
    reads its caller's deadline; anyio's walk cost ~3-5 µs of a remote call's client
    CPU on the benchmark VM. It relies on anyio internals (``_task_states``, and each
    scope's ``_deadline``, ``_cancel_called``, ``_shield`` and ``_parent_scope``), so it
    is None when they are not there, and the tests compare it with anyio's own on
    nested, shielded, cancelled and past-deadline scopes."""
    state_of = _anyio_task_states()
    if state_of is None:  # pragma: no cover - a future anyio
        return None
    ref = weakref.ref
    current_task = _current_task_getter(loop)
    inf = math.inf

    def effective_deadline() -> float:
        task = current_task()
        if task is None:
            return inf
        state = state_of(ref(task))
        if state is None:
            return inf
        scope = state.cancel_scope
        deadline = inf
        while scope is not None:
            if scope._cancel_called:
                return -inf
            if scope._deadline < deadline:  # noqa: PLR1730 - cheaper than min()
                deadline = scope._deadline
            if scope._shield:
                break
            scope = scope._parent_scope
        return deadline

    return effective_deadline


def _trio_effective_deadline() -> Callable[[], float]:
    """trio.current_effective_deadline, walking the cancel statuses in a loop by their
    slots instead of recursing through properties (0.8-7 µs under 0-8 task groups on
    the benchmark VM; about 3-9x less). Relies on trio internals (the task's
    ``_cancel_status``, its ``_parent``, ``_scope`` and ``effectively_cancelled``, the
    scope's ``_deadline`` and ``_shield``), so it is trio's own when they are not
    there (checked once); the tests compare the two."""
    import trio

    if not _trio_internals_present():  # pragma: no cover - a future trio
        return trio.current_effective_deadline
    current_task = trio.lowlevel.current_task
    inf = math.inf

    def effective_deadline() -> float:
        status: Any = current_task()._cancel_status
        deadline = inf
        while status is not None:
            if status.effectively_cancelled:
                return -inf
            scope = status._scope
            if scope._deadline < deadline:  # noqa: PLR1730 - cheaper than min()
                deadline = scope._deadline
            if scope._shield:
                break
            status = status._parent
        return deadline

    return effective_deadline


@functools.cache
def _trio_internals_present() -> bool:
    """Whether trio's cancel statuses look as :func:`_trio_effective_deadline` reads
    them (checked in the first trio task that asks)."""
    import trio

    try:
        status = trio.lowlevel.current_task()._cancel_status
        for name in ("_parent", "_scope", "effectively_cancelled"):
            getattr(status, name)
        for name in ("_deadline", "_shield"):
            getattr(status._scope, name)
    except AttributeError:  # pragma: no cover - a future trio
        return False
    return True


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
            _asyncio_effective_deadline(loop),
            set_deadline=_asyncio_deadline_setter,
        )
    if library == "trio":
        import trio

        def trio_scope(deadline: float) -> Scope:
            return trio.CancelScope(deadline=deadline)

        return Backend(
            "trio", TrioFuture, trio_scope, trio.current_time, _trio_effective_deadline()
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
