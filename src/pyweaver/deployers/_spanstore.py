"""The trace store: one deployment's recorded spans on disk, bounded and rotated.

Layout, in the deployment's directory under the registry's ``logs/`` dir, next to its
log (the same rotation, :class:`~pyweaver.deployers._logstore._files.RotatingFile`)::

    traces.jsonl        newest spans, one JSON object per line
    traces.1.jsonl      rotated: the previous ``max_bytes`` worth
    ...
    traces.<backups>.jsonl   oldest kept; older spans are dropped

So a deployment's spans take at most ``(backups + 1) * max_bytes`` on disk, however
long it runs with every call traced. A span is the dict
``pyweaver._runtime._tracing_sdk.span_to_dict`` makes. Only the deployer writes
(:class:`SpanWriter`); readers (:func:`pyweaver.deployers._traces.read_spans`, the
dashboard, ``pyweaver multi traces``) go through :func:`span_files` and :func:`read_file`,
and skip a torn or foreign line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from pyweaver.deployers._logstore._files import RotatingFile, files_oldest_first

__all__ = ["BACKUPS", "MAX_BYTES", "SpanWriter", "read_file", "span_files"]

STEM: Final = "traces"
#: Default cap of one file, and how many rotated files are kept (64 MiB in all).
MAX_BYTES: Final = 16 << 20
BACKUPS: Final = 3


class SpanWriter:
    """Appends spans to a deployment's trace store; a callable span sink (it is the
    multi deployer's ``span_sink``)."""

    def __init__(
        self, directory: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS
    ) -> None:
        self.directory = directory
        self._file: RotatingFile | None = None
        self._max_bytes = max_bytes
        self._backups = backups

    def __call__(self, spans: Sequence[dict[str, Any]]) -> None:
        self.write(spans)

    def write(self, spans: Sequence[dict[str, Any]]) -> None:
        data = "".join(
            json.dumps(span, separators=(",", ":"), default=str) + "\n" for span in spans
        ).encode()
        if not data:
            return
        if self._file is None:  # no file until a span arrives (tracing is usually off)
            self._file = RotatingFile(
                self.directory, STEM, max_bytes=self._max_bytes, backups=self._backups
            )
        self._file.write(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> SpanWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def span_files(directory: Path) -> list[Path]:
    """A deployment's span files, oldest first (some may not exist)."""
    return files_oldest_first(directory, STEM)


def read_file(path: Path, trace_id: str = "") -> Iterator[dict[str, Any]]:
    """The spans of one file (only ``trace_id``'s, if given), in the order written."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        for line in file:
            if not line.endswith(b"\n"):
                continue  # still being written
            if trace_id and trace_id.encode() not in line:
                continue  # cheap pre-filter before parsing
            try:
                span = json.loads(line)
            except ValueError:
                continue
            if isinstance(span, dict) and (not trace_id or span.get("trace_id") == trace_id):
                yield span
