"""The log entry every pyweaver process produces and every deployer stores.

One record type flows from the logger in an app process, over the control channel
(as CBOR, via :meth:`LogEntry.to_wire` / :meth:`LogEntry.from_wire`), into the
deployer's per-deployment log store, and out of ``pyweaver multi logs``.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["LogEntry"]


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
