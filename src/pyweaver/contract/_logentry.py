"""The log entry every pyweaver process produces and every deployer stores.

One record type flows from the logger in an app process, over the control channel
(as CBOR, via :meth:`LogEntry.to_wire` / :meth:`LogEntry.from_wire`), into the
deployer's per-deployment log store, and out of ``pyweaver multi logs``, in one of two
text forms: :func:`format_pretty` (one human line) and :func:`format_json` (JSON lines).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Final

import attrs

__all__ = ["LogEntry", "format_json", "format_pretty"]


@attrs.frozen(kw_only=True)
class LogEntry:
    time_ns: int  # wall clock, time.time_ns()
    level: str  # "debug" | "info" | "warning" | "error"
    message: str
    component: str = ""  # full component name, "" for non-component code
    replica: str = ""  # weavelet/replica id
    group: str = ""  # colocation group name
    app: str = ""
    deployment: str = ""
    file: str = ""
    line: int = 0
    attrs: dict[str, str] = attrs.field(factory=dict)
    trace_id: str = ""  # 32 hex digits, "" when no span was active
    span_id: str = ""  # 16 hex digits
    source: str = "logger"  # "logger" | "stdout" | "stderr"

    def to_wire(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> LogEntry:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


# -- formats --------------------------------------------------------------------------

_RESET: Final = "\x1b[0m"
_DIM: Final = "\x1b[2m"
_CYAN: Final = "\x1b[36m"
_LEVEL_COLORS: Final = {
    "debug": "\x1b[2m",
    "info": "",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
}
_COMPONENT_WIDTH: Final = 17


def _short_component(name: str) -> str:
    # "shop.services.cart.Cart" -> "cart.Cart": the interface and its module.
    parts = name.rsplit(".", 2)
    return ".".join(parts[-2:])


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in '"=\\' for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def format_pretty(entry: LogEntry, *, color: bool = False, deployment: bool = False) -> str:
    """One human line (plus an indented traceback, if any)::

        I1125 03:21:07.123 app.Reverser      73ddcd04 app.py:14] ready pid=1234

    Level initial and MMDD, local time to the millisecond, (with ``deployment``, the
    deployment id's first 8 characters,) the short component (or logger name, or
    stdout/stderr), the replica's first 8 characters when known, file:line,
    message, then ``key=value`` attributes.
    """
    seconds, nanos = divmod(entry.time_ns, 1_000_000_000)
    stamp = time.strftime("%m%d %H:%M:%S", time.localtime(seconds))
    prefix = f"{entry.level[:1].upper() or '?'}{stamp}.{nanos // 1_000_000:03d}"
    if deployment:
        prefix += f" {entry.deployment[:8] or '-':<8}"
    attrs = dict(entry.attrs)
    traceback_text = attrs.pop("traceback", "")
    if entry.component:
        who = _short_component(entry.component)
    elif entry.source != "logger":
        who = entry.source
    else:
        who = attrs.pop("logger", "")
    where = f"{os.path.basename(entry.file)}:{entry.line}" if entry.file else ""
    replica = f" {entry.replica[:8]}" if entry.replica else ""
    pairs = " ".join(f"{key}={_quote(value)}" for key, value in attrs.items())
    if color:
        level_color = _LEVEL_COLORS.get(entry.level, "")
        line = (
            f"{level_color}{prefix}{_RESET} {_CYAN}{who:<{_COMPONENT_WIDTH}}{_RESET}"
            f"{_DIM}{replica} {where}]{_RESET} {level_color}{entry.message}{_RESET}"
        )
        if pairs:
            line += f" {_DIM}{pairs}{_RESET}"
    else:
        line = f"{prefix} {who:<{_COMPONENT_WIDTH}}{replica} {where}] {entry.message}"
        if pairs:
            line += f" {pairs}"
    if traceback_text:
        indented = "\n".join("    " + text for text in traceback_text.splitlines())
        line += "\n" + (f"{_DIM}{indented}{_RESET}" if color else indented)
    return line


def format_json(entry: LogEntry) -> str:
    """One JSON object per line: the entry's wire form
    (``LogEntry.from_wire(json.loads(line))`` gives the entry back)."""
    return json.dumps(entry.to_wire(), ensure_ascii=False, separators=(",", ":"))
