"""Slots: keeping each replica slot filled with a live weavelet.

One task per slot (in the deployer's task group) starts a weavelet in an
:class:`~pyweaver.envelope.Envelope`, runs its routing :class:`~._pusher.Pusher` beside
it, and reports it up (``on_up``) once it registered and down (``on_down``) when it
ends. A weavelet that ends while the deployment goes on is restarted in the same slot
by :func:`pyweaver.envelope.supervise` (exponential backoff; ``max_crashes`` within
``window`` seconds is a crash loop, raised as a :class:`CrashLoopError`). The main
group's weavelet is never restarted: its end is the deployment's end.

A weavelet that could not be started because the *deployer* ran out of file
descriptors is not a crash: it is retried with backoff and never counts toward a crash
loop (see :func:`pyweaver.envelope.supervise`).

**Health.** Beside each weavelet runs a health checker: every ``health.interval``
seconds it asks the weavelet for its health (``GET_HEALTH``), bounded by
``health.timeout``. After ``health.misses`` unanswered checks in a row (a hung process,
a SIGSTOP, an event loop blocked by a handler) the slot is ``unresponsive``: it is no
longer live, so the routing info pushed to callers and the listener proxies leave it
out (``on_health``), and status shows it. The first answer puts it back.

**Leftovers.** A weavelet killed by a signal cannot remove its Unix socket files; the
keeper removes them once the process is gone (names are never reused, so nothing else
can own them).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs

from pyweaver._errors import ProcessError
from pyweaver.call._ratelimit import RateLimitedLog
from pyweaver.deployers.multi._groups import Slot
from pyweaver.deployers.multi._pusher import Pusher
from pyweaver.envelope import Envelope, Outcome, RestartPolicy, supervise
from pyweaver.envelope._process import out_of_descriptors

__all__ = ["HealthPolicy", "SlotKeeper"]


@attrs.frozen(kw_only=True)
class HealthPolicy:
    """How the deployer checks that its weavelets still answer.

    Attributes:
        interval: seconds between two checks of one weavelet.
        timeout: seconds a check waits for the answer.
        misses: unanswered checks in a row that make a weavelet ``unresponsive``.
    """

    interval: float = 1.0
    timeout: float = 1.0
    misses: int = 3


class _LogAdapter(logging.Logger):
    """A :class:`logging.Logger` whose warnings go to the deployer's own log, so
    :class:`RateLimitedLog` can rate-limit them."""

    def __init__(self, log: Callable[[str, str], None]) -> None:
        super().__init__("pyweaver.multi")
        self._sink = log

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        self._sink("warning", str(msg) % args if args else str(msg))


class SlotKeeper:
    """Fills slots with weavelets and restarts them (see the module docstring).

    Args:
        new_envelope: the envelope of a new weavelet for a slot (its ``replica_id`` set).
        policy: when to restart, and when to give up.
        stopping: whether the deployment is being stopped (then nothing restarts).
        on_up, on_down: a slot's weavelet is up (registered) / has ended.
        log: the deployer's own log, ``log(level, message)``.
        health: how weavelets are checked; None: not at all.
        on_health: a slot became unresponsive, or answers again.
    """

    def __init__(
        self,
        *,
        new_envelope: Callable[[Slot], Envelope],
        policy: RestartPolicy,
        stopping: Callable[[], bool],
        on_up: Callable[[Slot], None],
        on_down: Callable[[Slot], None],
        log: Callable[[str, str], None],
        health: HealthPolicy | None = None,
        on_health: Callable[[Slot], None] = lambda slot: None,
    ) -> None:
        self._new_envelope = new_envelope
        self.policy = policy
        self._stopping = stopping
        self._on_up = on_up
        self._on_down = on_down
        self._log = log
        self.health = health
        self._on_health = on_health
        # One restart warning per slot per 10 s: a crash-looping group must not fill
        # the persistent log.
        self._warnings = RateLimitedLog(_LogAdapter(log))

    async def keep_filled(self, slot: Slot) -> Outcome:
        """Fill ``slot`` until its weavelet ends for good: the deployment stops, the
        slot is retired, or (main group) the weavelet ends. Raises
        :class:`CrashLoopError` when it keeps crashing."""

        def restart(outcome: Outcome) -> bool:
            return not (self._stopping() or slot.retired or slot.group.is_main)

        def restarting(outcome: Outcome, delay: float) -> None:
            if outcome.deployer_fault:
                self._warnings.warning(
                    f"{slot.id}:descriptors",
                    f"cannot start weavelet {slot.id}: the deployer is out of file "
                    f"descriptors; retrying in {delay:.2f} s",
                )
                return
            self._warnings.warning(
                f"{slot.id}:restart",
                f"weavelet {slot.id} exited (status {outcome.status}); restarting in {delay:.2f} s",
            )

        return await supervise(
            lambda: self._fill_once(slot), self.policy, restart=restart, on_restart=restarting
        )

    async def _fill_once(self, slot: Slot) -> Outcome:
        slot.replica_id = f"{slot.index}-{uuid.uuid4().hex[:6]}"
        envelope = self._new_envelope(slot)
        error: ProcessError | None = None
        status: int | None = None
        deployer_fault = False
        slot.envelope = envelope
        slot.state = "starting"
        try:
            async with envelope, anyio.create_task_group() as tasks:
                slot.pusher = Pusher(envelope)
                tasks.start_soon(slot.pusher.run)
                slot.state = "ready"
                slot.starts += 1
                self._on_up(slot)
                if self.health is not None:
                    tasks.start_soon(self._check_health, slot, envelope, self.health)
                status = await envelope.wait()
                tasks.cancel_scope.cancel()
        except Exception as exc:
            if out_of_descriptors(exc):
                # The deployer's own "too many open files": not the weavelet's crash.
                deployer_fault = True
                status = None
            elif isinstance(exc, ProcessError):
                error = exc
                status = exc.returncode
            else:
                # Not the weavelet's fault as far as we know (the envelope itself
                # failed); treat it as a crash of this replica, never of the deployer.
                self._log("error", f"weavelet {slot.id}: envelope failed: {exc!r}")
                status = None
        finally:
            last_lines = error.last_lines if error is not None else envelope.last_lines
            slot.envelope = None
            slot.pusher = None
            slot.last_exit = status
            slot.state = "stopped" if self._stopping() or slot.retired else "restarting"
            _remove_sockets(envelope)
            self._on_down(slot)
        return Outcome(
            status=status,
            error=error,
            argv=error.argv if error is not None else (),
            last_lines=last_lines,
            deployer_fault=deployer_fault,
        )

    async def _check_health(self, slot: Slot, envelope: Envelope, policy: HealthPolicy) -> None:
        """Mark ``slot`` unresponsive after ``policy.misses`` unanswered checks in a row,
        and ready again at the first answer (see the module docstring)."""
        misses = 0
        while True:
            await anyio.sleep(policy.interval)
            answered = False
            with anyio.move_on_after(policy.timeout):
                try:
                    await envelope.health()
                    answered = True
                except Exception:
                    answered = False  # a broken control channel: as good as no answer
            if answered:
                misses = 0
                if slot.state == "unresponsive":
                    slot.state = "ready"
                    self._log("info", f"weavelet {slot.id} answers again; back in rotation")
                    self._on_health(slot)
                continue
            misses += 1
            if misses >= policy.misses and slot.state == "ready":
                slot.state = "unresponsive"
                slot.unresponsive_count += 1
                self._log(
                    "warning",
                    f"weavelet {slot.id} (pid {envelope.pid}) did not answer {misses} health "
                    f"checks ({policy.timeout:g} s each); out of rotation until it answers",
                )
                self._on_health(slot)


def _remove_sockets(envelope: Envelope) -> None:
    """Remove the Unix socket files of a weavelet that has ended (a SIGKILLed one
    could not). Called only after its process is gone."""
    info = envelope.bootstrap
    for address in (info.control_address, info.data_address):
        if address.startswith("unix://"):
            Path(address.removeprefix("unix://")).unlink(missing_ok=True)
