"""Supervision: keep restarting something that keeps ending, until it is a crash loop.

:func:`supervise` runs ``run_once`` (start a weavelet, wait for it to end, report how
it ended as an :class:`Outcome`) again and again under a :class:`RestartPolicy`:

- after each run, ``restart(outcome)`` says whether the run was a crash to recover from;
  if not, supervision ends and returns that outcome;
- otherwise the next run starts after a delay that grows exponentially
  (``initial_backoff``, times ``multiplier`` per crash, at most ``max_backoff``) and
  falls back to ``initial_backoff`` after a run that lasted ``window`` seconds;
- ``max_crashes`` crashes within ``window`` seconds is a crash loop: supervision gives
  up with a :class:`CrashLoopError` that carries the last run's exit status and output
  lines (usually the traceback that explains it), chained to its
  :class:`ProcessError` if it had one.

A run that could not even start for want of the *supervisor's* resources (it ran out
of file descriptors: ``Outcome.deployer_fault``) is not the child's crash: it is
retried with the same growing backoff but never counts toward a crash loop.

An exception from ``run_once`` itself ends supervision as itself: a caller that wants a
failure to count as a crash catches it inside ``run_once`` and reports an outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

import anyio
import attrs

from pyweaver._errors import CrashLoopError, ProcessError

__all__ = ["Outcome", "RestartPolicy", "supervise"]


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """When to restart a crashed child, and when to give up.

    Attributes:
        max_crashes: give up after this many crashes ...
        window: ... within this many seconds (a crash loop).
        initial_backoff: delay before the first restart, in seconds.
        max_backoff: the delay doubles (``multiplier``) per crash up to this; it falls
            back to ``initial_backoff`` after a child has run for ``window`` seconds.
        restart_on_success: restart a child that exits with status 0 too (otherwise a
            clean exit ends supervision). Used by :func:`supervise`'s default
            ``restart``; a caller passing its own decides for itself.
    """

    max_crashes: int = 5
    window: float = 60.0
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    restart_on_success: bool = False


def _strings(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


def _lines(items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(items)


@attrs.frozen(kw_only=True)
class Outcome:
    """How one supervised run ended.

    Attributes:
        status: the exit status (negative: killed by that signal); None if unknown.
        error: why it failed to start (exited or timed out before it was ready), if so.
        argv: what ran (for error messages).
        last_lines: the last lines it wrote, as ``(stream, line)`` pairs.
        deployer_fault: it never ran because the supervisor itself lacked a resource
            (e.g. "too many open files"): retried, never counted as a crash.
    """

    status: int | None
    error: ProcessError | None = None
    deployer_fault: bool = False
    argv: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    last_lines: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_lines)


RunOnce = Callable[[], Awaitable[Outcome]]
RestartCheck = Callable[[Outcome], bool]
RestartHook = Callable[[Outcome, float], None]
"""``on_restart(outcome, delay)``: called before waiting ``delay`` seconds to restart."""


async def supervise(
    run_once: RunOnce,
    policy: RestartPolicy,
    *,
    restart: RestartCheck | None = None,
    on_restart: RestartHook | None = None,
) -> Outcome:
    """Run ``run_once`` until ``restart`` says an outcome is final; that outcome.

    ``restart`` (default: a non-zero status, or any status with
    ``policy.restart_on_success``) is asked after each run and again after the delay,
    so a caller that stops meanwhile is not restarted. Raises :class:`CrashLoopError`
    on a crash loop (see the module docstring).
    """
    if restart is None:

        def restart(outcome: Outcome) -> bool:
            return outcome.status != 0 or policy.restart_on_success

    crashes: deque[float] = deque()
    backoff = policy.initial_backoff
    while True:
        started_at = anyio.current_time()
        outcome = await run_once()
        if not restart(outcome):
            return outcome
        now = anyio.current_time()
        if now - started_at >= policy.window:
            backoff = policy.initial_backoff  # it ran well for a while
        if outcome.deployer_fault:
            if on_restart is not None:
                on_restart(outcome, backoff)
            await anyio.sleep(backoff)
            backoff = min(backoff * policy.multiplier, policy.max_backoff)
            if not restart(outcome):
                return outcome
            continue
        crashes.append(now)
        while crashes and crashes[0] <= now - policy.window:
            crashes.popleft()
        if len(crashes) >= policy.max_crashes:
            raise _crash_loop(outcome, len(crashes), policy) from outcome.error
        if on_restart is not None:
            on_restart(outcome, backoff)
        await anyio.sleep(backoff)
        backoff = min(backoff * policy.multiplier, policy.max_backoff)
        if not restart(outcome):
            return outcome


def _crash_loop(outcome: Outcome, crashes: int, policy: RestartPolicy) -> CrashLoopError:
    lines: Sequence[tuple[str, str]] = outcome.last_lines
    if not lines and outcome.error is not None:
        lines = outcome.error.last_lines
    return CrashLoopError(
        f"crashed {crashes} times within {policy.window:g} s; giving up",
        argv=outcome.argv,
        returncode=outcome.status,
        last_lines=lines,
    )
