"""CPU time and memory of a process on this machine, read from Linux's ``/proc``.

:func:`process_usage` reads ``/proc/PID/stat`` (user + system CPU time, in clock ticks)
and ``/proc/PID/status`` (``VmRSS``). Elsewhere, or for a process that is gone, it
answers ``None``: the status pages then show a dash.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["process_usage"]


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


_TICKS = _clock_ticks()


def process_usage(pid: int) -> dict[str, Any] | None:
    """``{"cpu_seconds": float, "rss_bytes": int}`` of process ``pid``, or ``None``."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            stat = file.read()
        with open(f"/proc/{pid}/status", encoding="utf-8") as file:
            status = file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (IndexError, ValueError):
        return None
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            rss = int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else 0
            break
    return {"cpu_seconds": ticks / _TICKS, "rss_bytes": rss}
