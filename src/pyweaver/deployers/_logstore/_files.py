"""The files of one deployment's log: the JSON-lines encoding, the writer that appends
and rotates, and reading what is stored.

Layout (see the package docstring)::

    <deployment dir>/log.jsonl          newest entries (:data:`CURRENT`)
    <deployment dir>/log.1.jsonl        rotated: the previous ``max_bytes`` worth
    <deployment dir>/log.<backups>.jsonl   oldest kept

A line that is torn (no newline yet: still being written) or foreign is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pyweaver.contract._logentry import LogEntry

__all__ = ["CURRENT", "LogWriter", "RotatingFile", "decode", "files_oldest_first", "read_file"]

CURRENT = "log.jsonl"


def _encode(entry: LogEntry) -> bytes:
    return (json.dumps(entry.to_wire(), separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes) -> LogEntry | None:
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            return None
        return LogEntry.from_wire(data)
    except (ValueError, TypeError):
        return None


class RotatingFile:
    """An append-only file ``<directory>/<stem>.jsonl`` rotated at ``max_bytes``: the
    current file becomes ``<stem>.1.jsonl``, that one ``<stem>.2.jsonl``, and so on up to
    ``<stem>.<backups>.jsonl``; older data is dropped. So the files take at most
    ``(backups + 1) * max_bytes`` (a single write larger than ``max_bytes`` is kept
    whole). The log store and the trace store (``pyweaver.deployers._spanstore``) both
    write through it.
    """

    def __init__(
        self, directory: Path, stem: str, *, max_bytes: int = 32 << 20, backups: int = 3
    ) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be positive and backups non-negative")
        self.directory = directory
        self.stem = stem
        self.max_bytes = max_bytes
        self.backups = backups
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self._path(0), "ab")  # noqa: SIM115 (owned)
        self._size = self._file.tell()

    def _path(self, index: int) -> Path:
        suffix = f".{index}" if index else ""
        return self.directory / f"{self.stem}{suffix}.jsonl"

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines), rotating first if it would not fit."""
        if not data:
            return
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            self._path(0).unlink(missing_ok=True)
        else:
            self._path(self.backups).unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                if self._path(i).exists():
                    os.replace(self._path(i), self._path(i + 1))
            os.replace(self._path(0), self._path(1))
        self._file = open(self._path(0), "ab")  # noqa: SIM115 (owned)
        self._size = 0

    def close(self) -> None:
        self._file.close()


class LogWriter:
    """Appends one deployment's entries to its directory, rotating at ``max_bytes``.

    Writes are small buffered appends flushed once per :meth:`write` call, cheap enough
    to make from the deployer's event loop.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 32 << 20, backups: int = 3) -> None:
        self.directory = directory
        self._file = RotatingFile(directory, "log", max_bytes=max_bytes, backups=backups)

    def write(self, entries: Iterable[LogEntry]) -> None:
        self._file.write(b"".join(_encode(entry) for entry in entries))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def files_oldest_first(directory: Path, stem: str = "log") -> list[Path]:
    """The files of a :class:`RotatingFile` named ``stem``, oldest first; the current
    one (which may not exist) last."""
    rotated = []
    for path in directory.glob(f"{stem}.*.jsonl"):
        middle = path.name[len(stem) + 1 : -len(".jsonl")]
        if middle.isdigit():
            rotated.append((int(middle), path))
    return [path for _, path in sorted(rotated, reverse=True)] + [directory / f"{stem}.jsonl"]


def read_file(path: Path) -> Iterator[LogEntry]:
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return
    with file:
        for line in file:
            if line.endswith(b"\n"):  # a line without one is still being written
                entry = decode(line)
                if entry is not None:
                    yield entry
