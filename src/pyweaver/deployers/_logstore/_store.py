"""Every deployment's logs under one directory: read them merged by time, or follow
them as they are written."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from pyweaver.contract._logentry import LogEntry
from pyweaver.deployers._logstore._files import CURRENT, LogWriter, files_oldest_first, read_file
from pyweaver.deployers._logstore._query import LogQuery
from pyweaver.deployers._logstore._tail import Tail

__all__ = ["REORDER_WINDOW_NS", "LogStore"]


class LogStore:
    """All deployments' logs under one directory (the registry's ``logs_root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def writer(self, deployment_id: str, **options: Any) -> LogWriter:
        """A writer for ``deployment_id`` (options: ``max_bytes``, ``backups``)."""
        return LogWriter(self.root / deployment_id, **options)

    def deployments(self) -> list[str]:
        """Ids of the deployments that have logs."""
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def _directories(self, deployments: Sequence[str] | None) -> list[Path]:
        ids = self.deployments() if deployments is None else deployments
        return [self.root / deployment_id for deployment_id in ids]

    def read(
        self,
        query: LogQuery | None = None,
        *,
        deployments: Sequence[str] | None = None,
        since_ns: int | None = None,
    ) -> Iterator[LogEntry]:
        """Stored entries matching ``query`` (and made at ``since_ns`` or later), in
        time order across deployments and their replicas.

        A deployment's file holds entries in the order they arrived, which differs
        from their times by up to a shipping delay (replicas send batches); entries
        are put back in time order within :data:`REORDER_WINDOW_NS`."""
        streams = []
        for directory in self._directories(deployments):
            files = files_oldest_first(directory)
            streams.append(_in_time_order(entry for path in files for entry in read_file(path)))
        for entry in heapq.merge(*streams, key=_time):
            if since_ns is not None and entry.time_ns < since_ns:
                continue
            if query is None or query.matches(entry):
                yield entry

    async def follow(
        self,
        query: LogQuery | None = None,
        *,
        stop: anyio.Event,
        deployments: Sequence[str] | None = None,
        from_start: bool = True,
        since_ns: int | None = None,
        poll_interval: float = 0.2,
    ) -> AsyncIterator[LogEntry]:
        """Entries matching ``query`` as they are written, until ``stop`` is set.

        With ``from_start`` the stored entries come first (those made at ``since_ns``
        or later, when given); otherwise only entries written after the call
        (deployments that appear later are read from their start either way). What
        one look at the files finds is delivered in time order. After ``stop`` is
        set, what was written by then is still delivered.
        """

        def wanted(entry: LogEntry) -> bool:
            if since_ns is not None and entry.time_ns < since_ns:
                return False
            return query is None or query.matches(entry)

        tails: dict[Path, Tail] = {}
        first_pass = True
        try:
            while True:
                found: list[LogEntry] = []
                for directory in self._directories(deployments):
                    current = directory / CURRENT
                    tail = tails.get(current)
                    if tail is None:
                        if not current.exists():
                            continue
                        at_end = first_pass and not from_start
                        if not at_end:
                            for path in files_oldest_first(directory)[:-1]:
                                found.extend(e for e in read_file(path) if wanted(e))
                        tail = tails[current] = Tail(current, at_end=at_end)
                    found.extend(e for e in tail.read_new() if wanted(e))
                found.sort(key=_time)
                for entry in found:
                    yield entry
                first_pass = False
                if stop.is_set():
                    return
                with anyio.move_on_after(poll_interval):
                    await stop.wait()
        finally:
            for tail in tails.values():
                tail.close()


REORDER_WINDOW_NS = 30 * 10**9


def _time(entry: LogEntry) -> int:
    return entry.time_ns


def _in_time_order(entries: Iterator[LogEntry]) -> Iterator[LogEntry]:
    """``entries`` sorted by time, assuming none arrives more than
    :data:`REORDER_WINDOW_NS` after an entry made later than it (a later one still
    comes out, just out of order)."""
    heap: list[tuple[int, int, LogEntry]] = []
    newest = 0
    for index, entry in enumerate(entries):
        heapq.heappush(heap, (entry.time_ns, index, entry))
        newest = max(newest, entry.time_ns)
        while heap and heap[0][0] < newest - REORDER_WINDOW_NS:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]
