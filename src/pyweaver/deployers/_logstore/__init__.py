"""The log store: every deployment's log entries on disk, and the query language of
``pyweaver multi logs [QUERY]``.

Layout: one directory per deployment under the registry's ``logs/`` dir, holding an
append-only JSON-lines file (one :class:`~pyweaver.contract._logentry.LogEntry` per line, as
``LogEntry.to_wire()``)::

    logs/<deployment id>/log.jsonl      newest entries
    logs/<deployment id>/log.1.jsonl    rotated: the previous ``max_bytes`` worth
    ...
    logs/<deployment id>/log.<backups>.jsonl   oldest kept; older data is dropped

Only the deployer process writes (:class:`LogWriter`); any number of ``logs`` commands
read (:meth:`LogStore.read`) or tail (:meth:`LogStore.follow`) concurrently. A torn or
foreign line is skipped, never fatal.

One module per job: :mod:`._query` (the query language), :mod:`._files` (the file
layout, writing and rotating, reading stored files), :mod:`._tail` (following one file
across rotations) and :mod:`._store` (:class:`LogStore`: every deployment's logs, read
merged by time or followed live).
"""

from pyweaver.deployers._logstore._files import LogWriter as LogWriter
from pyweaver.deployers._logstore._query import LogQuery as LogQuery
from pyweaver.deployers._logstore._query import LogQueryError as LogQueryError
from pyweaver.deployers._logstore._query import level_rank as level_rank
from pyweaver.deployers._logstore._store import LogStore as LogStore

__all__ = [
    "LogQuery",
    "LogQueryError",
    "LogStore",
    "LogWriter",
    "level_rank",
]
