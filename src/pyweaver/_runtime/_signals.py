"""Signals: SIGTERM stops an app the way Ctrl-C does, and the process then ends as
killed by SIGTERM, without a traceback."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from typing import Any

import sniffio

__all__ = ["route_sigterm_like_sigint"]


def route_sigterm_like_sigint() -> None:
    """Make SIGTERM stop the app the way Ctrl-C does: the event loop's own SIGINT
    handler cancels main, so ``shutdown`` hooks run as it unwinds. The process then
    ends as killed by SIGTERM (status 143 in a shell), without a KeyboardInterrupt
    traceback: being stopped is expected, not an error."""
    try:
        handler = signal.getsignal(signal.SIGINT)
    except ValueError:  # pragma: no cover - not the main thread
        return
    if getattr(handler, "_pyweaver_sigterm", False):
        return
    trio = sniffio.current_async_library() == "trio"
    if not callable(handler):
        # SIGINT was ignored when the loop started (a shell without job control
        # starts `app &` so), so the loop installed no handler of its own. SIGTERM
        # must still stop the app: on asyncio, Python's own KeyboardInterrupt unwinds
        # the loop, whose end cancels the root task (shutdown hooks run). trio does not
        # survive a KeyboardInterrupt raised outside its own handler: SIGTERM there
        # keeps its default action (the process ends at once, without the hooks).
        if trio:
            return
        handler = signal.default_int_handler

    def on_sigterm(signum: int, frame: Any) -> None:
        global _terminated
        _terminated = True
        # (trio's handler insists on being called for SIGINT.)
        handler(signal.SIGINT if trio else signum, frame)

    on_sigterm._pyweaver_sigterm = True  # type: ignore[attr-defined]
    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread
        return
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if _terminated and issubclass(kind, KeyboardInterrupt):
            atexit.register(_die_by_sigterm)
            return
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook


_terminated = False


def _die_by_sigterm() -> None:
    """At exit, after SIGTERM unwound main: end the process by that signal."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
