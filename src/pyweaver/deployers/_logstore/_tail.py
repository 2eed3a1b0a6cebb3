"""Following one log file as it grows, across rotations and truncation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from pyweaver.contract._logentry import LogEntry
from pyweaver.deployers._logstore._files import decode, files_oldest_first, read_file

__all__ = ["Tail"]


class Tail:
    """Reads what is appended to one file, following it across rotations."""

    def __init__(self, path: Path, *, at_end: bool) -> None:
        self.path = path
        self.file: IO[bytes] | None = None
        self.inode = -1
        self.partial = b""
        self.open(at_end=at_end)

    def open(self, *, at_end: bool) -> None:
        try:
            self.file = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        except FileNotFoundError:
            self.file = None
            return
        self.inode = os.fstat(self.file.fileno()).st_ino
        self.partial = b""
        if at_end:
            self.file.seek(0, os.SEEK_END)

    def read_new(self) -> list[LogEntry]:
        entries = self._drain()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return entries
        if self.file is None or stat.st_ino != self.inode:
            # Rotated, perhaps several times since the last look. Our old file (still
            # open) was drained above; files rotated after it hold the entries in between.
            if self.file is not None:
                entries += self._read_rotated_after(self.inode)
            self.close()
            self.open(at_end=False)
            entries += self._drain()
        elif stat.st_size < self.file.tell():
            self.file.seek(0)  # truncated underneath us
            self.partial = b""
            entries += self._drain()
        return entries

    def _read_rotated_after(self, inode: int) -> list[LogEntry]:
        rotated = files_oldest_first(self.path.parent)[:-1]
        newer = rotated  # when our file was dropped already, every rotated file is newer
        for i, path in enumerate(rotated):
            try:
                if os.stat(path).st_ino == inode:
                    newer = rotated[i + 1 :]
                    break
            except FileNotFoundError:
                continue
        return [entry for path in newer for entry in read_file(path)]

    def _drain(self) -> list[LogEntry]:
        if self.file is None:
            return []
        data = self.partial + self.file.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [entry for line in lines if line and (entry := decode(line)) is not None]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
