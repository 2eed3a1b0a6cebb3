"""The query language of ``pyweaver multi logs [QUERY]``: a CEL expression (Common
Expression Language, as Service Weaver's ``weaver multi logs`` used), compiled once into
a predicate over :class:`~pyweaver.contract._logentry.LogEntry`.

Fields (:data:`FIELDS`)::

    app, deployment, component, replica, group   string  (full names and ids)
    level       string     "debug" | "info" | "warning" | "error"
    severity    int        10 debug, 20 info, 30 warning, 40 error
    msg         string     the message
    file, line  string, int
    source      string     "file:line"
    stream      string     "logger" | "stdout" | "stderr" (captured process output)
    time        timestamp  when the entry was made
    now         timestamp  when the query was compiled
    trace_id, span_id      string  (hex; "" when no span was active)
    attrs       map(string, string)

Examples: ``level == "error" && component.contains("Cart")``,
``attrs["user"] == "ann"`` (false for entries without a ``user``),
``time > timestamp("2026-11-30T00:00:00Z")``, ``time > now - duration("5m")``,
``msg.matches("^retry [0-9]+")`` (RE2, unanchored), ``severity >= 30``.

Parsing is cel-python's (``celpy``). Evaluation takes one of two paths: the common
subset (``&&``, ``||``, ``!``, comparisons, ``in``, ``contains``/``startsWith``/
``endsWith``/``matches``, ``attrs[...]``, ``has(attrs.k)``, ``timestamp``/``duration``
constants) compiles to plain Python closures, checked for types when the query is
compiled; anything else (macros such as ``attrs.exists(k, ...)``, arithmetic,
conversions) is evaluated by cel-python's own transpiled program, which is correct but
slower. Both follow CEL's rules for errors: ``false && error`` is false, ``true ||
error`` is true, and an entry whose query ends in an error (a missing attribute) does
not match. Malformed queries raise :class:`LogQueryError` naming the position.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final

import attrs
import celpy
import lark
import re2  # type: ignore[import-untyped]  # google-re2, a cel-python dependency
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from pyweaver._errors import LogQueryError
from pyweaver.contract._logentry import LogEntry

__all__ = ["FIELDS", "LogQuery", "LogQueryError", "Predicate", "level_rank"]

Predicate = Callable[[LogEntry], bool]

_LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}


def level_rank(level: str) -> int:
    """Severity of a level name; unknown names (e.g. captured stdout) rank as info."""
    return _LEVELS.get(level.lower(), _LEVELS["info"])


FIELDS: Final[dict[str, tuple[str, str]]] = {
    "app": ("string", "the app's name"),
    "deployment": ("string", "the deployment id"),
    "component": ("string", 'the full component name ("" outside components)'),
    "replica": ("string", "the replica (weavelet) id"),
    "group": ("string", "the colocation group"),
    "level": ("string", '"debug", "info", "warning" or "error"'),
    "severity": ("int", "10 debug, 20 info, 30 warning, 40 error"),
    "msg": ("string", "the message"),
    "file": ("string", "the source file"),
    "line": ("int", "the source line"),
    "source": ("string", '"file:line"'),
    "stream": ("string", '"logger", or "stdout"/"stderr" for captured output'),
    "time": ("timestamp", "when the entry was made"),
    "now": ("timestamp", "when the query was compiled"),
    "trace_id": ("string", 'the trace id (32 hex digits, "" without a span)'),
    "span_id": ("string", "the span id (16 hex digits)"),
    "attrs": ("map", "the attributes, map(string, string)"),
}

_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICRO: Final = datetime.timedelta(microseconds=1)
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})

_STRING_GETTERS: Final[dict[str, Callable[[LogEntry], str]]] = {
    "app": lambda e: e.app,
    "deployment": lambda e: e.deployment,
    "component": lambda e: e.component,
    "replica": lambda e: e.replica,
    "group": lambda e: e.group,
    "level": lambda e: e.level,
    "msg": lambda e: e.message,
    "file": lambda e: e.file,
    "source": lambda e: f"{e.file}:{e.line}",
    "stream": lambda e: e.source,
    "trace_id": lambda e: e.trace_id,
    "span_id": lambda e: e.span_id,
}
_INT_GETTERS: Final[dict[str, Callable[[LogEntry], int]]] = {
    "line": lambda e: e.line,
    "severity": lambda e: level_rank(e.level),
}


# -- parsing and checks ---------------------------------------------------------------------

_ENVIRONMENT: celpy.Environment | None = None


def _environment() -> celpy.Environment:
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        # cel-python logs every failed evaluation at ERROR; for a log query a failed
        # evaluation (a missing attribute) only means "no match".
        logging.getLogger("celpy").setLevel(logging.CRITICAL)
        _ENVIRONMENT = celpy.Environment(runner_class=celpy.CompiledRunner)
    return _ENVIRONMENT


def _offset(text: str, line: int | None, column: int | None) -> int:
    if not line or not column:
        return 0
    lines = text.split("\n")
    return min(sum(len(s) + 1 for s in lines[: line - 1]) + column - 1, len(text))


def _parse(text: str) -> lark.Tree[Any]:
    try:
        return _environment().compile(text)
    except CELParseError as exc:
        position = _offset(text, exc.line, exc.column)
        cause = exc.__context__
        if isinstance(cause, lark.exceptions.UnexpectedToken):
            if cause.token.type == "$END":
                problem = "the query ends too early"
                position = len(text.rstrip())
            else:
                problem = f"unexpected {str(cause.token)!r}"
        elif isinstance(cause, lark.exceptions.UnexpectedCharacters):
            problem = f"unexpected {cause.char!r}"
        else:
            problem = "syntax error"
        raise LogQueryError(text, position, f"{problem} (CEL syntax)") from None


def _tokens(node: lark.Tree[Any] | lark.Token) -> list[lark.Token]:
    if isinstance(node, lark.Token):
        return [node]
    return [token for child in node.children if child is not None for token in _tokens(child)]


def _position(text: str, node: lark.Tree[Any] | lark.Token) -> int:
    tokens = _tokens(node)
    if not tokens:
        return 0
    return _offset(text, tokens[0].line, tokens[0].column)


def _check_identifiers(text: str, tree: lark.Tree[Any]) -> set[str]:
    """The fields ``tree`` uses; an unknown name is a :class:`LogQueryError`."""
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS:
            arguments = node.children[2] if len(node.children) > 2 else None
            if isinstance(arguments, lark.Tree) and arguments.children:
                bound.update(str(t) for t in _tokens(arguments.children[0])[:1])
    used = set()
    known_functions = {*celpy.evaluation.base_functions, *_MACROS, "has", "dyn"}
    for node in tree.iter_subtrees():
        if node.data in ("ident_arg", "member_dot_arg"):
            function = node.children[0 if node.data == "ident_arg" else 1]
            if str(function) not in known_functions:
                raise LogQueryError(
                    text, _position(text, function), f"unknown function {str(function)!r}"
                )
        if node.data != "ident":
            continue
        name = str(node.children[0])
        if name in FIELDS:
            used.add(name)
        elif name not in bound:
            raise LogQueryError(
                text,
                _position(text, node),
                f"unknown field {name!r}; fields are {', '.join(FIELDS)}",
            )
    return used


# -- the fast path: the common subset as closures ----------------------------------------


class _Unsupported(Exception):
    """Outside the subset the closures cover: use cel-python's program."""


class _NoValue(Exception):
    """A CEL error while evaluating (e.g. a missing attribute)."""


@attrs.frozen
class _Value:
    kind: str  # "string" | "int" | "bool" | "timestamp" | "duration" | "map"
    get: Callable[[LogEntry], Any]
    constant: bool = False


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _const(kind: str, value: Any) -> _Value:
    return _Value(kind, lambda entry: value, constant=True)


def _ns(value: datetime.datetime | datetime.timedelta) -> int:
    if isinstance(value, datetime.datetime):
        return ((value - _EPOCH) // _MICRO) * 1000
    return (value // _MICRO) * 1000


_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "relation_eq": lambda a, b: a == b,
    "relation_ne": lambda a, b: a != b,
    "relation_lt": lambda a, b: a < b,
    "relation_le": lambda a, b: a <= b,
    "relation_gt": lambda a, b: a > b,
    "relation_ge": lambda a, b: a >= b,
}
_OPERATORS: Final = {
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
}


def _string_method(name: str, pattern: str) -> Callable[[str], bool]:
    if name == "contains":
        return lambda s: pattern in s
    if name == "startsWith":
        return lambda s: s.startswith(pattern)
    if name == "endsWith":
        return lambda s: s.endswith(pattern)
    options = re2.Options()
    options.log_errors = False  # the error is raised, not printed too
    regex = re2.compile(pattern, options=options)
    return lambda s: regex.search(s) is not None


class _Compiler:
    def __init__(self, text: str, now_ns: int) -> None:
        self.text = text
        self.now_ns = now_ns

    def error(self, node: lark.Tree[Any] | lark.Token, problem: str) -> LogQueryError:
        return LogQueryError(self.text, _position(self.text, node), problem)

    def predicate(self, tree: lark.Tree[Any]) -> Predicate:
        value = self.value(tree)
        if value.kind != "bool":
            raise self.error(
                tree, f"the query must be a condition (true or false), not {_a(value.kind)}"
            )
        get = value.get

        def matches(entry: LogEntry) -> bool:
            try:
                return bool(get(entry))
            except _NoValue:
                return False

        return matches

    def condition(self, node: lark.Tree[Any]) -> Callable[[LogEntry], bool]:
        value = self.value(node)
        if value.kind != "bool":
            raise self.error(node, f"expected a condition (true or false), found {_a(value.kind)}")
        return value.get

    def value(self, node: lark.Tree[Any]) -> _Value:
        children = node.children
        kind = node.data
        if kind in ("expr", "member", "primary", "multiplication", "paren_expr"):
            if len(children) != 1:
                raise _Unsupported(kind)
            return self.value(children[0])
        if kind in ("conditionalor", "conditionaland") and len(children) == 1:
            return self.value(children[0])
        if kind == "conditionaland":
            return _Value("bool", _and(self.condition(children[0]), self.condition(children[1])))
        if kind == "conditionalor":
            return _Value("bool", _or(self.condition(children[0]), self.condition(children[1])))
        if kind == "relation":
            if len(children) == 1:
                return self.value(children[0])
            return self.relation(children[0], children[1])
        if kind == "addition":
            if len(children) == 1:
                return self.value(children[0])
            return self.addition(children[0], children[1])
        if kind == "unary":
            if len(children) == 1:
                return self.value(children[0])
            if children[0].data != "unary_not":
                raise _Unsupported("unary minus")
            inner = self.condition(children[1])
            return _Value("bool", lambda entry: not inner(entry))
        if kind == "ident":
            return self.field(str(children[0]))
        if kind == "literal":
            token = children[0]
            assert isinstance(token, lark.Token)
            return self.literal(token)
        if kind == "member_index":
            return self.attribute(children[0], self.value(children[1]), node)
        if kind == "member_dot":
            return self.attribute(children[0], _const("string", str(children[1])), node)
        if kind == "member_dot_arg":
            return self.method(node)
        if kind == "ident_arg":
            return self.function(node)
        raise _Unsupported(kind)

    def field(self, name: str) -> _Value:
        if name in _STRING_GETTERS:
            return _Value("string", _STRING_GETTERS[name])
        if name in _INT_GETTERS:
            return _Value("int", _INT_GETTERS[name])
        if name == "time":
            return _Value("timestamp", lambda entry: entry.time_ns)
        if name == "now":
            return _const("timestamp", self.now_ns)
        if name == "attrs":
            return _Value("map", lambda entry: entry.attrs)
        raise _Unsupported(name)  # a macro's variable

    def literal(self, token: lark.Token) -> _Value:
        if token.type in ("STRING_LIT", "MLSTRING_LIT"):
            return _const("string", str(celpy.evaluation.celstr(token)))
        if token.type == "INT_LIT":
            return _const("int", int(str(token), 0))
        if token.type == "BOOL_LIT":
            return _const("bool", str(token) == "true")
        raise _Unsupported(token.type)

    def attribute(self, target: lark.Tree[Any], key: _Value, node: lark.Tree[Any]) -> _Value:
        mapping = self.value(target)
        if mapping.kind != "map" or key.kind != "string" or not key.constant:
            raise _Unsupported("index")
        name = key.get(None)  # type: ignore[arg-type]  # a constant ignores the entry

        def get(entry: LogEntry) -> str:
            try:
                return entry.attrs[name]
            except KeyError:
                raise _NoValue(name) from None

        return _Value("string", get)

    def relation(self, op_node: lark.Tree[Any], right_node: lark.Tree[Any]) -> _Value:
        left = self.value(op_node.children[0])
        right = self.value(right_node)
        op = op_node.data
        if op == "relation_in":
            if right.kind != "map":
                raise _Unsupported("in")
            if left.kind != "string":
                raise self.error(right_node, f"'in attrs' needs a string key, not {_a(left.kind)}")
            key, mapping = left.get, right.get
            return _Value("bool", lambda entry: key(entry) in mapping(entry))
        if left.kind != right.kind:
            raise self.error(
                op_node,
                f"cannot compare {_a(left.kind)} with {_a(right.kind)} using {_OPERATORS[op]}",
            )
        if left.kind in ("map", "bool") and op not in ("relation_eq", "relation_ne"):
            raise self.error(op_node, f"{_OPERATORS[op]} does not apply to {_a(left.kind)}")
        if left.kind == "map":
            raise _Unsupported("map comparison")
        compare, a, b = _ORDER[op], left.get, right.get
        if right.constant:
            constant = b(None)  # type: ignore[arg-type]
            return _Value("bool", lambda entry: compare(a(entry), constant))
        return _Value("bool", lambda entry: compare(a(entry), b(entry)))

    def addition(self, op_node: lark.Tree[Any], right_node: lark.Tree[Any]) -> _Value:
        left = self.value(op_node.children[0])
        right = self.value(right_node)
        if not (left.constant and right.constant and right.kind == "duration"):
            raise _Unsupported("arithmetic")
        if left.kind not in ("timestamp", "duration"):
            raise _Unsupported("arithmetic")
        a, b = left.get(None), right.get(None)  # type: ignore[arg-type]
        return _const(left.kind, a + b if op_node.data == "addition_add" else a - b)

    def arguments(self, node: lark.Tree[Any] | None) -> list[lark.Tree[Any]]:
        if node is None:
            return []
        return [child for child in node.children if isinstance(child, lark.Tree)]

    def method(self, node: lark.Tree[Any]) -> _Value:
        name = str(node.children[1])
        if name not in ("contains", "startsWith", "endsWith", "matches"):
            raise _Unsupported(name)
        target = self.value(node.children[0])
        args = self.arguments(node.children[2] if len(node.children) > 2 else None)
        if target.kind != "string":
            raise _Unsupported(f"{name} on a {target.kind}")
        if len(args) != 1:
            raise self.error(node, f"{name}() takes one string")
        argument = self.value(args[0])
        if argument.kind != "string":
            raise self.error(args[0], f"{name}() takes a string, not {_a(argument.kind)}")
        if not argument.constant:
            raise _Unsupported("a computed argument")
        pattern = argument.get(None)  # type: ignore[arg-type]
        try:
            test = _string_method(name, pattern)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise self.error(args[0], f"bad regular expression (RE2): {reason}") from None
        get = target.get
        return _Value("bool", lambda entry: test(get(entry)))

    def function(self, node: lark.Tree[Any]) -> _Value:
        name = str(node.children[0])
        args = self.arguments(node.children[1] if len(node.children) > 1 else None)
        if name == "has" and len(args) == 1:
            member = _single_member(args[0])
            if member is not None and member.data == "member_dot":
                mapping = self.value(member.children[0])
                key = str(member.children[1])
                if mapping.kind == "map":
                    get = mapping.get
                    return _Value("bool", lambda entry: key in get(entry))
            raise _Unsupported("has")
        if name not in ("timestamp", "duration") or len(args) != 1:
            raise _Unsupported(name)
        argument = self.value(args[0])
        if not (argument.constant and argument.kind == "string"):
            raise _Unsupported(name)
        text = argument.get(None)  # type: ignore[arg-type]
        try:
            if name == "timestamp":
                return _const("timestamp", _ns(celtypes.TimestampType(text)))
            return _const("duration", _ns(celtypes.DurationType(text)))
        except ValueError as exc:
            example = '"2026-11-30T00:00:00Z"' if name == "timestamp" else '"90s" or "1h30m"'
            raise self.error(args[0], f"bad {name} {text!r} ({exc}); e.g. {example}") from None


def _single_member(node: lark.Tree[Any]) -> lark.Tree[Any] | None:
    """The member node an expression consists of alone (e.g. ``attrs.user``)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1 and node.data != "member_dot":
        child = node.children[0]
        if not isinstance(child, lark.Tree):
            return None
        node = child
    return node if isinstance(node, lark.Tree) and node.data == "member_dot" else None


def _and(
    left: Callable[[LogEntry], bool], right: Callable[[LogEntry], bool]
) -> Callable[[LogEntry], bool]:
    def both(entry: LogEntry) -> bool:
        try:
            first = left(entry)
        except _NoValue:
            if not right(entry):
                return False  # error && false is false
            raise
        return first and right(entry)

    return both


def _or(
    left: Callable[[LogEntry], bool], right: Callable[[LogEntry], bool]
) -> Callable[[LogEntry], bool]:
    def either(entry: LogEntry) -> bool:
        try:
            first = left(entry)
        except _NoValue:
            if right(entry):
                return True  # error || true is true
            raise
        return first or right(entry)

    return either


# -- the general path: cel-python's program -----------------------------------------------


def _timestamp(time_ns: int) -> celtypes.TimestampType:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return celtypes.TimestampType(moment + datetime.timedelta(microseconds=nanos // 1000))


def _unwrap(args: tuple[Any, ...]) -> tuple[str, Any]:
    """A CELEvalError's (message, Python exception type), through the wrapper the
    transpiled program adds (``("evaluation error", CELEvalError, inner args)``)."""
    while len(args) > 2 and args[1] is CELEvalError and isinstance(args[2], tuple):
        args = args[2]
    return (str(args[0]) if args else "error"), (args[1] if len(args) > 1 else None)


def _converter(
    cel_type: Callable[[Any], Any], get: Callable[[LogEntry], Any]
) -> Callable[[LogEntry], Any]:
    return lambda entry: cel_type(get(entry))


def _cel_attrs(entry: LogEntry) -> celtypes.MapType:
    string = celtypes.StringType
    return celtypes.MapType({string(k): string(v) for k, v in entry.attrs.items()})


def _celpy_predicate(text: str, tree: lark.Tree[Any], fields: set[str], now_ns: int) -> Predicate:
    program = _environment().program(tree)
    now = _timestamp(now_ns)
    converters: list[tuple[str, Callable[[LogEntry], Any]]] = []
    for name in sorted(fields):
        if name in _STRING_GETTERS:
            converters.append((name, _converter(celtypes.StringType, _STRING_GETTERS[name])))
        elif name in _INT_GETTERS:
            converters.append((name, _converter(celtypes.IntType, _INT_GETTERS[name])))
        elif name == "time":
            converters.append((name, lambda e: _timestamp(e.time_ns)))
        elif name == "now":
            converters.append((name, lambda e: now))
        elif name == "attrs":
            converters.append((name, _cel_attrs))

    def evaluate(entry: LogEntry) -> Any:
        return program.evaluate({name: convert(entry) for name, convert in converters})

    # Compile-time check on an entry without attributes: type errors, unknown
    # functions and a non-boolean result are the query's fault, not the entry's.
    try:
        probe = evaluate(LogEntry(time_ns=now_ns, level="info", message=""))
    except CELEvalError as exc:
        problem, cause = _unwrap(exc.args)
        if cause is not KeyError:
            raise LogQueryError(text, 0, f"cannot evaluate: {problem}") from None
    else:
        if not isinstance(probe, (bool, celtypes.BoolType)):
            kind = type(probe).__name__.removesuffix("Type").lower()
            raise LogQueryError(
                text, 0, f"the query must be a condition (true or false), not {_a(kind)}"
            )

    def matches(entry: LogEntry) -> bool:
        try:
            return bool(evaluate(entry))
        except CELEvalError:
            return False

    return matches


def compile_query(text: str, now_ns: int, *, general: bool = False) -> Predicate:
    """``text`` as a predicate (``general``: always through cel-python's program)."""
    tree = _parse(text)
    fields = _check_identifiers(text, tree)
    if not general:
        try:
            return _Compiler(text, now_ns).predicate(tree)
        except _Unsupported:
            pass
    return _celpy_predicate(text, tree, fields, now_ns)


@attrs.frozen
class LogQuery:
    """A compiled log query: ``LogQuery.parse(text).matches(entry)``."""

    text: str
    _predicate: Predicate = attrs.field(eq=False, repr=False)

    @classmethod
    def parse(cls, text: str, *, now_ns: int | None = None) -> LogQuery:
        """Compile the CEL expression ``text`` (see the module docstring); an empty
        query matches everything. ``now_ns`` is the value of ``now``; default: now."""
        if not text.strip():
            return cls(text, lambda entry: True)
        now = time.time_ns() if now_ns is None else now_ns
        return cls(text, compile_query(text, now))

    def matches(self, entry: LogEntry) -> bool:
        return self._predicate(entry)


def fields_help() -> str:
    """The fields, one per line, for ``--help`` texts."""
    width = max(map(len, FIELDS))
    return os.linesep.join(
        f"  {name:<{width}}  {kind:<9}  {meaning}" for name, (kind, meaning) in FIELDS.items()
    )
