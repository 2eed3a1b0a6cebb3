"""Warnings a peer can provoke, logged at most once per reason per interval.

Every refused or broken connection is worth a warning, but a peer that opens thousands
of them must not write thousands of lines to the deployment's persistent log. A
:class:`RateLimitedLog` logs the first warning of each *reason* (a short fixed string:
the protocol error's code, ``handshake-timeout``, ``too-many-connections``...), drops the
others for ``interval`` seconds, and tells how many it dropped with the next one it
logs. The reasons are a small fixed set, so its memory is bounded too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["DEFAULT_WARNING_INTERVAL", "RateLimitedLog"]

DEFAULT_WARNING_INTERVAL: Final = 10.0


class RateLimitedLog:
    """``warning(reason, message, *args)``: at most one per ``reason`` per ``interval``."""

    __slots__ = ("_clock", "_interval", "_last", "_logger", "_suppressed")

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_WARNING_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, message: str, *args: Any) -> None:
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        if suppressed and last is not None:
            message += " (and %d more like it in the last %.0f s, not logged)"
            args = (*args, suppressed, now - last)
        self._logger.warning(message, *args)

    def suppressed(self, reason: str) -> int:
        """Warnings of ``reason`` dropped since the last one logged."""
        return self._suppressed.get(reason, 0)
