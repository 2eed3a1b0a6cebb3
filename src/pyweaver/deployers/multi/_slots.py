"""Slots: keeping each replica slot filled with a live weavelet.

One task per slot (in the deployer's task group) starts a weavelet in an
:class:`~pyweaver.envelope.Envelope`, runs its routing :class:`~._pusher.Pusher` beside
it, and reports it up (``on_up``) once it registered and down (``on_down``) when it
ends. A weavelet that ends while the deployment goes on is restarted in the same slot
by :func:`pyweaver.envelope.supervise` (exponential backoff; ``max_crashes`` within
``window`` seconds is a crash loop, raised as a :class:`CrashLoopError`). The main
group's weavelet is never restarted: its end is the deployment's end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import anyio

from pyweaver._errors import ProcessError
from pyweaver.deployers.multi._groups import Slot
from pyweaver.deployers.multi._pusher import Pusher
from pyweaver.envelope import Envelope, Outcome, RestartPolicy, supervise

__all__ = ["SlotKeeper"]


class SlotKeeper:
    """Fills slots with weavelets and restarts them (see the module docstring).

    Args:
        new_envelope: the envelope of a new weavelet for a slot (its ``replica_id`` set).
        policy: when to restart, and when to give up.
        stopping: whether the deployment is being stopped (then nothing restarts).
        on_up, on_down: a slot's weavelet is up (registered) / has ended.
        log: the deployer's own log, ``log(level, message)``.
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
    ) -> None:
        self._new_envelope = new_envelope
        self.policy = policy
        self._stopping = stopping
        self._on_up = on_up
        self._on_down = on_down
        self._log = log

    async def keep_filled(self, slot: Slot) -> Outcome:
        """Fill ``slot`` until its weavelet ends for good: the deployment stops, the
        slot is retired, or (main group) the weavelet ends. Raises
        :class:`CrashLoopError` when it keeps crashing."""

        def restart(outcome: Outcome) -> bool:
            return not (self._stopping() or slot.retired or slot.group.is_main)

        def restarting(outcome: Outcome, delay: float) -> None:
            self._log(
                "warning",
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
        slot.envelope = envelope
        slot.state = "starting"
        try:
            async with envelope, anyio.create_task_group() as tasks:
                slot.pusher = Pusher(envelope)
                tasks.start_soon(slot.pusher.run)
                slot.state = "ready"
                slot.starts += 1
                self._on_up(slot)
                status = await envelope.wait()
                tasks.cancel_scope.cancel()
        except ProcessError as exc:
            error = exc
            status = exc.returncode
        except Exception as exc:
            # Not the weavelet's fault as far as we know (the envelope itself failed);
            # treat it as a crash of this replica, never of the deployer.
            self._log("error", f"weavelet {slot.id}: envelope failed: {exc!r}")
            status = None
        finally:
            last_lines = error.last_lines if error is not None else envelope.last_lines
            slot.envelope = None
            slot.pusher = None
            slot.last_exit = status
            slot.state = "stopped" if self._stopping() or slot.retired else "restarting"
            self._on_down(slot)
        return Outcome(
            status=status,
            error=error,
            argv=error.argv if error is not None else (),
            last_lines=last_lines,
        )
