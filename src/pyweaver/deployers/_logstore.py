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

Query grammar (whitespace between tokens is ignored)::

    query      := [or]                        empty: every entry
    or         := and ("||" and)*
    and        := unary ("&&" unary)*
    unary      := "!" unary | "(" or ")" | "since" DURATION | STRING | comparison
    comparison := FIELD OP VALUE
    FIELD      := time | level | msg | message | component | replica | group | app
                | deployment | file | line | source | trace_id | span_id
                | attr.NAME | attrs.NAME
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "contains"
    VALUE      := STRING | WORD
    STRING     := "..." or '...' with backslash escapes
    WORD       := a run of letters, digits and _ . : / - +
    DURATION   := NUMBER ("ms" | "s" | "m" | "h" | "d"), e.g. 90s, 5m, 1.5h

Meaning:

- a lone ``STRING`` is ``msg contains STRING``; ``since 5m`` is ``time >= now - 5m``
  (``now`` fixed when the query is parsed).
- ``~`` is a regular-expression search (Python :mod:`re`), ``contains`` a substring test;
  both apply to text fields.
- ``level`` compares by severity: debug < info < warning (or warn) < error.
- ``time`` compares with an ISO 8601 timestamp (``"2026-11-25T03:00:00"``; without a
  zone it is local time).
- ``line`` compares as an integer; other fields compare as text and only with ``==``,
  ``!=``, ``~`` and ``contains``.
- ``component == X`` also matches when the full name ends in ``.X`` (``Cache`` matches
  ``app.Cache``); ``replica``, ``deployment``, ``trace_id`` and ``span_id`` ``==`` match
  an id prefix, as the pretty output abbreviates ids.
- ``attr.NAME`` is the entry's attribute ``NAME``; any comparison with an attribute the
  entry does not have is false (``!=`` too), so ``attr.user != "ann"`` keeps only entries
  that have a ``user``.

Example: ``component == Cache && level >= warning && !(msg ~ "^retry") || since 30s``.
Errors are :class:`LogQueryError` naming the position.
"""

from __future__ import annotations

import heapq
import json
import operator
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
import attrs

from pyweaver._errors import LogQueryError
from pyweaver.contract._logentry import LogEntry

__all__ = [
    "LogQuery",
    "LogQueryError",
    "LogStore",
    "LogWriter",
    "level_rank",
]

_CURRENT = "log.jsonl"
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
_DURATION_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_UNITS_NS["d"] = 24 * _DURATION_UNITS_NS["h"]


def level_rank(level: str) -> int:
    """Severity of a level name; unknown names (e.g. captured stdout) rank as info."""
    return _LEVELS.get(level.lower(), _LEVELS["info"])


# --------------------------------------------------------------------------- queries


@attrs.frozen
class _Token:
    kind: str  # "op" | "string" | "word" | "end"
    text: str
    position: int


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|~|\(|\))
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<word>[A-Za-z0-9_.:/+\-]+)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _tokenize(query: str) -> list[_Token]:
    tokens = []
    position = 0
    while True:
        while position < len(query) and query[position].isspace():
            position += 1
        if position == len(query):
            tokens.append(_Token("end", "", position))
            return tokens
        match = _TOKEN.match(query, position)
        if match is None or match.lastgroup is None:
            quote = query[position] in "\"'"
            problem = "unterminated string" if quote else f"unexpected {query[position]!r}"
            raise LogQueryError(query, position, problem)
        start = match.start(match.lastgroup)
        text = match.group(match.lastgroup)
        if match.lastgroup == "string":
            text = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])
        tokens.append(_Token(match.lastgroup, text, start))
        position = match.end()


Predicate = Callable[[LogEntry], bool]

_TEXT_FIELDS: dict[str, Callable[[LogEntry], str]] = {
    "msg": lambda e: e.message,
    "message": lambda e: e.message,
    "component": lambda e: e.component,
    "replica": lambda e: e.replica,
    "group": lambda e: e.group,
    "app": lambda e: e.app,
    "deployment": lambda e: e.deployment,
    "file": lambda e: e.file,
    "source": lambda e: e.source,
    "trace_id": lambda e: e.trace_id,
    "span_id": lambda e: e.span_id,
}
_PREFIX_FIELDS = {"replica", "deployment", "trace_id", "span_id"}
_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class _Parser:
    def __init__(self, query: str, now_ns: int) -> None:
        self.query = query
        self.now_ns = now_ns
        self.tokens = _tokenize(query)
        self.index = 0

    def error(self, token: _Token, problem: str) -> LogQueryError:
        return LogQueryError(self.query, token.position, problem)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def accept(self, op: str) -> bool:
        token = self.peek()
        if token.kind == "op" and token.text == op:
            self.index += 1
            return True
        return False

    def parse(self) -> Predicate:
        if self.peek().kind == "end":
            return lambda entry: True
        predicate = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, f"expected && or || or the end, found {token.text!r}")
        return predicate

    def parse_or(self) -> Predicate:
        terms = [self.parse_and()]
        while self.accept("||"):
            terms.append(self.parse_and())
        if len(terms) == 1:
            return terms[0]
        return lambda entry: any(term(entry) for term in terms)

    def parse_and(self) -> Predicate:
        terms = [self.parse_unary()]
        while self.accept("&&"):
            terms.append(self.parse_unary())
        if len(terms) == 1:
            return terms[0]
        return lambda entry: all(term(entry) for term in terms)

    def parse_unary(self) -> Predicate:
        token = self.take()
        if token.kind == "op" and token.text == "!":
            inner = self.parse_unary()
            return lambda entry: not inner(entry)
        if token.kind == "op" and token.text == "(":
            inner = self.parse_or()
            closing = self.take()
            if not (closing.kind == "op" and closing.text == ")"):
                raise self.error(closing, "expected )")
            return inner
        if token.kind == "string":
            text = token.text
            return lambda entry: text in entry.message
        if token.kind == "word" and token.text == "since":
            return self.parse_since()
        if token.kind == "word":
            return self.parse_comparison(token)
        what = "the end of the query" if token.kind == "end" else repr(token.text)
        raise self.error(token, f"expected a field, a string, 'since', ! or (, found {what}")

    def parse_since(self) -> Predicate:
        token = self.take()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", token.text)
        if token.kind != "word" or match is None:
            raise self.error(token, "expected a duration such as 30s, 5m, 2h or 1d")
        cutoff = self.now_ns - int(float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)])
        return lambda entry: entry.time_ns >= cutoff

    def parse_comparison(self, field: _Token) -> Predicate:
        name = field.text
        op_token = self.take()
        op = op_token.text
        if not (op_token.kind == "op" and op in {*_ORDERED, "~"}) and not (
            op_token.kind == "word" and op == "contains"
        ):
            raise self.error(op_token, f"expected an operator after {name!r}")
        value = self.take()
        if value.kind not in ("string", "word"):
            raise self.error(value, f"expected a value after {op!r}")

        if name == "time":
            return self.time_comparison(op_token, value)
        if name == "level":
            return self.level_comparison(op_token, value)
        if name == "line":
            if op not in _ORDERED or not re.fullmatch(r"-?\d+", value.text):
                raise self.error(value, "line compares with an integer using == != < <= > >=")
            compare, number = _ORDERED[op], int(value.text)
            return lambda entry: compare(entry.line, number)
        if name.startswith(("attr.", "attrs.")):
            key = name.split(".", 1)[1]
            if not key:
                raise self.error(field, "expected an attribute name after 'attr.'")
            text_test = self.text_test(op_token, value, prefix=False)

            def attr_test(entry: LogEntry) -> bool:
                found = entry.attrs.get(key)
                return found is not None and text_test(found)

            return attr_test
        getter = _TEXT_FIELDS.get(name)
        if getter is None:
            fields = ", ".join(["time", "level", "line", *_TEXT_FIELDS, "attr.NAME"])
            raise self.error(field, f"unknown field {name!r}; fields are {fields}")
        if name == "component" and op in ("==", "!="):
            target, suffix = value.text, "." + value.text
            equal = op == "=="
            return lambda entry: (
                (entry.component == target or entry.component.endswith(suffix)) == equal
            )
        test = self.text_test(op_token, value, prefix=name in _PREFIX_FIELDS)
        return lambda entry: test(getter(entry))

    def text_test(self, op_token: _Token, value: _Token, *, prefix: bool) -> Callable[[str], bool]:
        op, text = op_token.text, value.text
        if op == "~":
            try:
                pattern = re.compile(text)
            except re.error as exc:
                raise self.error(value, f"bad regular expression: {exc}") from exc
            return lambda s: pattern.search(s) is not None
        if op == "contains":
            return lambda s: text in s
        if op == "==":
            if prefix:
                return lambda s: bool(text) and s.startswith(text)
            return lambda s: s == text
        if op == "!=":
            if prefix:
                return lambda s: not (text and s.startswith(text))
            return lambda s: s != text
        raise self.error(op_token, f"{op} does not apply to text; use == != ~ or contains")

    def level_comparison(self, op_token: _Token, value: _Token) -> Predicate:
        if op_token.text not in _ORDERED:
            raise self.error(op_token, "level compares with == != < <= > >=")
        rank = _LEVELS.get(value.text.lower())
        if rank is None:
            raise self.error(value, "unknown level; levels are debug, info, warning, error")
        compare = _ORDERED[op_token.text]
        return lambda entry: compare(level_rank(entry.level), rank)

    def time_comparison(self, op_token: _Token, value: _Token) -> Predicate:
        if op_token.text not in _ORDERED:
            raise self.error(op_token, "time compares with == != < <= > >=")
        try:
            moment = datetime.fromisoformat(value.text)
        except ValueError as exc:
            problem = "expected an ISO 8601 time such as 2026-11-25T03:00:00"
            raise self.error(value, problem) from exc
        # A naive time is local time: astimezone() assumes so.
        instant_ns = int(moment.astimezone().timestamp() * 1_000_000) * 1000
        compare = _ORDERED[op_token.text]
        return lambda entry: compare(entry.time_ns, instant_ns)


@attrs.frozen
class LogQuery:
    """A parsed log query: ``LogQuery.parse(text).matches(entry)``."""

    text: str
    _predicate: Predicate = attrs.field(eq=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, now_ns: int | None = None) -> LogQuery:
        """Parse ``text`` (see the module docstring for the grammar). ``now_ns`` is the
        reference time of ``since``; default: now."""
        now = time.time_ns() if now_ns is None else now_ns
        return cls(text, _Parser(text, now).parse())

    def matches(self, entry: LogEntry) -> bool:
        return self._predicate(entry)


# --------------------------------------------------------------------------- writing


def _encode(entry: LogEntry) -> bytes:
    return (json.dumps(entry.to_wire(), separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _decode(line: bytes) -> LogEntry | None:
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
        self._file: IO[bytes] = open(directory / _CURRENT, "ab")  # noqa: SIM115 (owned)
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
            (path / _CURRENT).unlink(missing_ok=True)
        else:
            (path / f"log.{self.backups}.jsonl").unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                if (path / f"log.{i}.jsonl").exists():
                    os.replace(path / f"log.{i}.jsonl", path / f"log.{i + 1}.jsonl")
            os.replace(path / _CURRENT, path / "log.1.jsonl")
        self._file = open(path / _CURRENT, "ab")  # noqa: SIM115 (owned)
        self._size = 0

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- reading


def _files_oldest_first(directory: Path) -> list[Path]:
    rotated = []
    for path in directory.glob("log.*.jsonl"):
        middle = path.name[len("log.") : -len(".jsonl")]
        if middle.isdigit():
            rotated.append((int(middle), path))
    return [path for _, path in sorted(rotated, reverse=True)] + [directory / _CURRENT]


def _read_file(path: Path) -> Iterator[LogEntry]:
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return
    with file:
        for line in file:
            if line.endswith(b"\n"):  # a line without one is still being written
                entry = _decode(line)
                if entry is not None:
                    yield entry


class _Tail:
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
        rotated = _files_oldest_first(self.path.parent)[:-1]
        newer = rotated  # when our file was dropped already, every rotated file is newer
        for i, path in enumerate(rotated):
            try:
                if os.stat(path).st_ino == inode:
                    newer = rotated[i + 1 :]
                    break
            except FileNotFoundError:
                continue
        return [entry for path in newer for entry in _read_file(path)]

    def _drain(self) -> list[LogEntry]:
        if self.file is None:
            return []
        data = self.partial + self.file.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [entry for line in lines if line and (entry := _decode(line)) is not None]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


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
        self, query: LogQuery | None = None, *, deployments: Sequence[str] | None = None
    ) -> Iterator[LogEntry]:
        """Stored entries matching ``query``, merged across deployments by time."""
        streams = []
        for directory in self._directories(deployments):
            files = _files_oldest_first(directory)
            streams.append(entry for path in files for entry in _read_file(path))
        for entry in heapq.merge(*streams, key=lambda e: e.time_ns):
            if query is None or query.matches(entry):
                yield entry

    async def follow(
        self,
        query: LogQuery | None = None,
        *,
        stop: anyio.Event,
        deployments: Sequence[str] | None = None,
        from_start: bool = True,
        poll_interval: float = 0.2,
    ) -> AsyncIterator[LogEntry]:
        """Entries matching ``query`` as they are written, until ``stop`` is set.

        With ``from_start`` the stored entries come first; otherwise only entries
        written after the call (deployments that appear later are read from their
        start either way). After ``stop`` is set, what was written by then is
        still delivered.
        """
        tails: dict[Path, _Tail] = {}
        first_pass = True
        try:
            while True:
                for directory in self._directories(deployments):
                    current = directory / _CURRENT
                    tail = tails.get(current)
                    if tail is None:
                        if not current.exists():
                            continue
                        at_end = first_pass and not from_start
                        if not at_end:
                            for path in _files_oldest_first(directory)[:-1]:
                                for entry in _read_file(path):
                                    if query is None or query.matches(entry):
                                        yield entry
                        tail = tails[current] = _Tail(current, at_end=at_end)
                    for entry in tail.read_new():
                        if query is None or query.matches(entry):
                            yield entry
                first_pass = False
                if stop.is_set():
                    return
                with anyio.move_on_after(poll_interval):
                    await stop.wait()
        finally:
            for tail in tails.values():
                tail.close()
