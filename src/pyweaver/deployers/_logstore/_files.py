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

__all__ = ["CURRENT", "LogWriter", "decode", "files_oldest_first", "read_file"]

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


class LogWriter:
    """Appends one deployment's entries to its directory, rotating at ``max_bytes``.

    Writes are small buffered appends flushed once per :meth:`write` call, cheap enough
    to make from the deployer's event loop.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 32 << 20, backups: int = 3) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be positive and backups non-negative")
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file: IO[bytes] = open(directory / CURRENT, "ab")  # noqa: SIM115 (owned)
        self._size = self._file.tell()

    def write(self, entries: Iterable[LogEntry]) -> None:
        data = b"".join(_encode(entry) for entry in entries)
        if not data:
            return
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        path = self.directory
        if self.backups == 0:
            (path / CURRENT).unlink(missing_ok=True)
        else:
            (path / f"log.{self.backups}.jsonl").unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                if (path / f"log.{i}.jsonl").exists():
                    os.replace(path / f"log.{i}.jsonl", path / f"log.{i + 1}.jsonl")
            os.replace(path / CURRENT, path / "log.1.jsonl")
        self._file = open(path / CURRENT, "ab")  # noqa: SIM115 (owned)
        self._size = 0

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def files_oldest_first(directory: Path) -> list[Path]:
    rotated = []
    for path in directory.glob("log.*.jsonl"):
        middle = path.name[len("log.") : -len(".jsonl")]
        if middle.isdigit():
            rotated.append((int(middle), path))
    return [path for _, path in sorted(rotated, reverse=True)] + [directory / CURRENT]


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
