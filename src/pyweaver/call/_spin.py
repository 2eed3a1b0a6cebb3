"""Adaptive busy-polling: keep the event loop polling for a moment after call traffic.

An event loop with nothing to do sleeps in ``epoll_wait``; the reply (or the next
request) then has to wake the process, and on this benchmark machine (a 2-vCPU VM) that
wake-up is most of a remote call's latency: a 16-byte echo between two processes took
~136 µs at the median with sleeping loops and ~38 µs with loops that kept polling
(``benchmarks/remote_component.py``, uvloop, the raw protocol). Kernel busy polling
(``SO_BUSY_POLL``) and runtimes that spin before parking a thread (Go's scheduler) rest
on the same observation.

A :class:`Spinner` is one task that, for ``window`` seconds after the last
:meth:`Spinner.poke`, yields to the loop over and over (``asyncio.sleep(0)``, trio's
checkpoint): with a task always runnable, the loop polls its sockets with a zero
timeout instead of sleeping, so the answer is read the moment it arrives. Sessions poke
it when a client sends a request and when a server receives one, so a client spins
while it waits for a quick answer and a server spins while its clients are likely to
send again. After ``window`` with no traffic the task parks on a future: an idle
process does not spin. The cost is at most ``window`` of CPU per burst of traffic, and
one extra task step per loop iteration while traffic flows; a spinner whose spins keep
expiring without an answer cools down (see :class:`Spinner`), so apps whose calls take
milliseconds, or with more processes than cores, do not pay it. After its first
:data:`GIVE_WAY_AFTER`, an episode offers the CPU to any other runnable thread
(``sched_yield``) at each spin: a peer process sharing this CPU then answers in
microseconds instead of when the kernel preempts the spinner (sequential p99 with
client and server pinned to one CPU: ~1.1 ms without it, ~0.35-0.4 ms with it).

``PYWEAVER_SPIN_US`` sets the window for every client and server that is not given one
(default 100 µs, 250 µs on trio; ``0`` turns spinning off).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Final

from pyweaver.call._backend import Backend, FutureLike
from pyweaver.call._session import ClientSession, ServerSession

__all__ = [
    "DEFAULT_SPIN",
    "DEFAULT_SPIN_TRIO",
    "GIVE_WAY_AFTER",
    "PROBE_EVERY",
    "SPIN_ENV",
    "WASTED_LIMIT",
    "Spinner",
    "spin_window",
]

SPIN_ENV: Final = "PYWEAVER_SPIN_US"
#: Seconds a loop keeps polling after the last call traffic, unless PYWEAVER_SPIN_US
#: says otherwise.
DEFAULT_SPIN: Final = 100e-6
#: The same on trio, whose round trips take about 2.5 times as long as asyncio's on
#: uvloop (a trio scheduler pass costs ~4 µs here, an asyncio one ~1.5): with 100 µs,
#: a trio component call's answer mostly came just after the window, every spin was
#: wasted, and the spinner cooled down (sequential p50 ~200 µs; ~100 µs with 250).
DEFAULT_SPIN_TRIO: Final = 250e-6
#: Wasted episodes in a row (no answer within the window) before the spinner cools
#: down, and then one poke in this many starts a probing episode (see Spinner).
WASTED_LIMIT: Final = 3
PROBE_EVERY: Final = 16
#: Seconds an episode spins before each spin also offers the CPU to other runnable
#: threads (``sched_yield``, which costs a few µs on a VM): answers from a peer on
#: another CPU mostly land sooner; a peer sharing this CPU gets it after this long.
GIVE_WAY_AFTER: Final = 20e-6


def spin_window(value: float | None = None, backend: str = "asyncio") -> float:
    """The spin window in seconds: ``value`` if given, else ``PYWEAVER_SPIN_US``
    (microseconds), else :data:`DEFAULT_SPIN` (:data:`DEFAULT_SPIN_TRIO` when
    ``backend`` is ``"trio"``). Raises ValueError naming the variable when it is not a
    non-negative number."""
    if value is not None:
        if not value >= 0:
            raise ValueError(f"spin must be a non-negative number of seconds, got {value!r}")
        return float(value)
    raw = os.environ.get(SPIN_ENV, "").strip()
    if not raw:
        return DEFAULT_SPIN_TRIO if backend == "trio" else DEFAULT_SPIN
    try:
        micros = float(raw)
    except ValueError:
        micros = -1.0
    if not micros >= 0 or micros == float("inf"):
        raise ValueError(
            f"{SPIN_ENV}={raw!r} is not a number of microseconds (0 turns spinning off)"
        )
    return micros / 1e6


class Spinner:
    """Keeps its event loop polling for ``window`` seconds after the last poke (see
    the module docstring). Run :meth:`run` in a task group; :meth:`poke` and
    :meth:`hit` from the loop's thread.

    Spinning pays only when the answer comes within the window. An *episode* runs from
    a poke until bytes arrive (:meth:`hit`) with no poke since, or until a window
    passes with neither: then it was wasted. After :data:`WASTED_LIMIT` wasted
    episodes in a row the spinner only starts an episode on every
    :data:`PROBE_EVERY`-th poke, until one of those is a hit again. So a process
    whose peers answer in milliseconds (real work, or more processes than cores)
    stops spending CPU on spinning, and one in a quick ping-pong keeps it.
    """

    __slots__ = ("_hit", "_parked", "_poked", "_skipped", "episodes", "wasted", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._poked = False
        self._hit = False
        self._parked: FutureLike[None] | None = None
        self._skipped = 0  # pokes ignored while cooling down
        #: Episodes spun so far, and the current run of wasted ones.
        self.episodes = 0
        self.wasted = 0

    def poke(self) -> None:
        """Call traffic went out or came in alone: keep (or start) polling."""
        self._poked = True
        parked = self._parked
        if parked is not None:
            if self.wasted >= WASTED_LIMIT:
                self._skipped += 1
                if self._skipped < PROBE_EVERY:
                    self._poked = False
                    return
                self._skipped = 0
            self._hit = False  # only bytes after this poke answer it
            self._parked = None
            if not parked.done():  # cancelled, and the spinner has not run since
                parked.set_result(None)

    def hit(self) -> None:
        """Bytes arrived: if spinning, the spin was worth it."""
        self._hit = True

    def attach(self, session: ClientSession | ServerSession) -> None:
        """Have ``session`` poke this spinner and report its hits."""
        session.poke = self.poke
        session.hit = self.hit

    @property
    def parked(self) -> bool:
        """Waiting for a poke (not spinning)."""
        return self._parked is not None

    async def run(self, backend: Backend) -> None:
        """Spin after every poke; park in between. Returns only when cancelled."""
        clock = backend.clock
        yield_now = _yielder(backend)
        give_way = getattr(os, "sched_yield", _nothing)
        window = self.window
        while True:
            if not self._poked:
                parked: FutureLike[None] = backend.new_future()
                self._parked = parked
                try:
                    await parked
                finally:
                    self._parked = None
            self._poked = False
            self.episodes += 1
            useful = False
            start = clock()
            until = start + window
            polite = start + GIVE_WAY_AFTER
            while True:
                await yield_now()
                if self._poked:  # more traffic went out or came in alone: go on
                    self._poked = False
                    self._hit = False
                    until = clock() + window
                elif self._hit:  # the answer came: done, unless poked again
                    useful = True
                    break
                else:
                    now = clock()
                    if now >= until:
                        break
                    if now >= polite:
                        give_way()
            self.wasted = 0 if useful else self.wasted + 1


def _yielder(backend: Backend) -> Callable[[], Awaitable[None]]:
    """The cheapest "let the loop run one iteration, then resume me" of the backend."""
    if backend.name == "trio":
        import trio

        return trio.lowlevel.checkpoint

    sleep = asyncio.sleep

    def yield_asyncio() -> Awaitable[None]:
        return sleep(0)

    return yield_asyncio


def _nothing() -> None:
    pass
