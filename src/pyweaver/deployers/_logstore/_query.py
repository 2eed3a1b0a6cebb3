"""The query language of ``pyweaver multi logs [QUERY]``: a query parses once into a
predicate over :class:`~pyweaver.contract._logentry.LogEntry`.

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

import operator
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from pyweaver._errors import LogQueryError
from pyweaver.contract._logentry import LogEntry

__all__ = ["LogQuery", "LogQueryError", "Predicate", "level_rank"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
_DURATION_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_UNITS_NS["d"] = 24 * _DURATION_UNITS_NS["h"]


def level_rank(level: str) -> int:
    """Severity of a level name; unknown names (e.g. captured stdout) rank as info."""
    return _LEVELS.get(level.lower(), _LEVELS["info"])


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
