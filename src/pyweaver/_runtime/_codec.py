"""The codec: method arguments, results and exceptions to CBOR bytes and back.

One :class:`Codec` per process judges types (:meth:`Codec.check_type`) and builds one
:class:`MethodCodec` per component method at registration (:meth:`Codec.method_codec`).
Building a method codec compiles its argument and result types into a handful of small
Python functions (generated source, like attrs' and cattrs' own, and like the Go
``weaver generate`` encoders this replaces), so a call does no type dispatch: encoding is
attribute reads plus one ``cbor2.dumps``; decoding is one ``cbor2.loads`` plus inline type
checks and object construction.

Wire format
-----------
Every peer runs the same code (the call handshake checks a schema fingerprint, see
:attr:`MethodCodec.schema`), so values travel **positionally**, without field names or type
tags, as in Service Weaver's own encoding. Each type has a CBOR form:

=====================  ==========================================================
type                   CBOR form
=====================  ==========================================================
None, bool, int,       null, true/false, integer (bignum tags for huge ints),
float, str, bytes      float64, text, byte string
enum                   its ``value`` when every value is an int or str, else its name
datetime               text, ``isoformat()``; ``[text, 1]`` when ``fold == 1``
date                   integer, ``toordinal()``
timedelta              integer, total microseconds
Decimal                text, ``str(d)``
UUID                   16-byte byte string
list, tuple[T, ...],   array of the elements' forms
set, frozenset
dict                   map, when the keys are scalars (the kinds above); else an
                       array of alternating key and value forms
Optional[T], unions    null for None; a single other member as itself; several
                       scalar members (None/bool/int/float/str/bytes) as
                       themselves; otherwise ``[member index, member form]``
AutoMarshal class,     **spliced**: its fields' forms, in field order, take
tuple[A, B] (fixed)    consecutive places in the enclosing array
=====================  ==========================================================

Splicing keeps nesting (which costs cbor2 more than the items themselves) out of the
bytes: a ``list[Item]`` of 20 three-field items is one flat array of 60 items. Where a
single place must hold a spliced value (a dict key or value, a union member, or a class
that contains itself), it is *boxed*: wrapped in an array of its fields' forms.
Zero-field classes and empty tuples are always boxed.

The three messages:

* arguments: an array of the arguments' forms, spliced: ``[a0..., a1..., ...]``;
* a successful result: ``[0, value...]`` (spliced);
* an exception: ``[1, type_name, message, traceback, [fields...]]`` for an AutoMarshal
  exception (re-raised as the same class on the caller's side), or
  ``[2, type_name, message, traceback]`` for any other (re-raised as
  :class:`~pyweaver.RemoteException`).

Worked example: for ``async def move(self, p: Point, steps: list[Point]) -> None`` with
``Point(x: int, y: int)``, ``move(Point(1, 2), [Point(3, 4)])`` encodes as
``[1, 2, [3, 4]]``, which is the six bytes::

    83          array(3)
       01       1            p.x
       02       2            p.y
       82       array(2)     steps, flattened
          03    3            steps[0].x
          04    4            steps[0].y

and the result ``None`` as ``[0, null]``: ``82 00 f6``.

Decoding checks every value's type; objects are rebuilt field by field without calling
``__init__`` (like ``copy`` and ``pickle`` do), so validators and ``__attrs_post_init__``
do not run again. A payload that is not valid CBOR or does not match the types raises
:class:`~pyweaver.RemoteCallError` naming the method and, where it can, the parameter and
field; a value the sender cannot encode does the same on the sending side.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import itertools
import linecache
import operator
import reprlib
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import attrs
import cbor2

from pyweaver._errors import RegistrationError, RemoteCallError, RemoteException
from pyweaver._runtime._automarshal import AutoMarshal, ensure_attrs, full_name, lookup

__all__ = ["Codec", "MethodCodec"]

_NoneType = type(None)

# Result tags (the first item of a result array).
_OK = 0
_AUTOMARSHAL_EXCEPTION = 1
_OTHER_EXCEPTION = 2


# -- errors while decoding --------------------------------------------------------------


class _Mismatch(Exception):
    """A decoded value does not have the expected shape. Never escapes this module."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.context: list[str] = []

    def within(self, where: str) -> _Mismatch:
        self.context.insert(0, where)
        return self

    def __str__(self) -> str:
        if not self.context:
            return self.message
        return f"{' -> '.join(self.context)}: {self.message}"


_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40


def _mismatch(expected: str, value: object) -> _Mismatch:
    return _Mismatch(f"expected {expected}, got {type(value).__name__} {_short_repr.repr(value)}")


def _failure(where: str, what: str, verb: str, exc: BaseException) -> RemoteCallError:
    reason = str(exc) if isinstance(exc, _Mismatch) else f"{type(exc).__name__}: {exc}"
    return RemoteCallError(f"{where}: cannot {verb} {what}: {reason}")


def _encode_failure(where: str, what: str, exc: BaseException) -> RemoteCallError:
    return _failure(where, what, "encode", exc)


def _decode_failure(where: str, what: str, exc: BaseException) -> RemoteCallError:
    return _failure(where, what, "decode", exc)


# -- conversions used by the generated code ---------------------------------------------


def _encode_datetime(value: datetime) -> Any:
    text = value.isoformat()
    return [text, 1] if value.fold else text


def _decode_datetime(raw: Any) -> datetime:
    if type(raw) is str:
        return datetime.fromisoformat(raw)
    if type(raw) is list and len(raw) == 2 and type(raw[0]) is str and raw[1] == 1:
        return datetime.fromisoformat(raw[0]).replace(fold=1)
    raise _mismatch("a datetime", raw)


def _encode_timedelta(value: timedelta) -> int:
    return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds


def _enum_decoder(enum_type: type[enum.Enum]) -> Callable[[Any], enum.Enum]:
    members = {member._value_: member for member in enum_type}

    def decode(value: Any) -> enum.Enum:
        member = members.get(value)
        # Flag combinations are members that no iteration lists.
        return member if member is not None else enum_type(value)

    return decode


def _union_index(value: Any, member_classes: Sequence[tuple[type, ...]]) -> int:
    for index, classes in enumerate(member_classes):
        if isinstance(value, classes):
            return index
    raise TypeError(f"{type(value).__name__} is none of the union's types")


def _text(value: str) -> str:
    """``value`` made encodable as CBOR text (no lone surrogates)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe_exception(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


# -- type names and normalization -------------------------------------------------------

_SEQUENCE_ORIGINS: dict[Any, type] = {
    list: list,
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    set: set,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
    frozenset: frozenset,
}
_MAPPING_ORIGINS: dict[Any, type] = {
    dict: dict,
    collections.abc.Mapping: dict,
    collections.abc.MutableMapping: dict,
}


def _type_name(tp: Any) -> str:
    """A readable name of a type for messages and schemas: ``list[app.Point]``."""
    if tp is None or tp is _NoneType:
        return "None"
    if isinstance(tp, str):
        return repr(tp)
    if isinstance(tp, typing.TypeVar):
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in typing.get_args(tp))
    if origin is collections.abc.Callable:
        return "Callable"
    if origin is not None:
        args = typing.get_args(tp)
        shown = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{_type_name(origin)}[{shown}]"
    if tp is collections.abc.Callable:
        return "Callable"
    if isinstance(tp, type):
        if tp.__module__ in ("builtins", "typing"):
            return tp.__qualname__
        return full_name(tp)
    if isinstance(tp, types.BuiltinFunctionType | types.FunctionType):
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).removeprefix("typing.")


def _normalize(tp: Any) -> Any:
    """Strip what does not change the wire form: Annotated, NewType, aliases."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        elif type(tp).__name__ == "TypeAliasType":  # ``type X = ...`` (3.12+)
            tp = tp.__value__
        elif tp is None:
            return _NoneType
        else:
            return tp


class _Unsupported(Exception):
    """A type that cannot cross the wire, with the path that led to it."""

    def __init__(self, trail: tuple[str, ...], offending: str, reason: str) -> None:
        super().__init__(trail, offending, reason)
        self.trail = trail
        self.offending = offending
        self.reason = reason

    def describe(self) -> str:
        steps = list(self.trail)
        if not steps or steps[-1] != self.offending:
            steps.append(self.offending)
        return f"{' -> '.join(steps)} is not serializable ({self.reason})"


# -- code generation --------------------------------------------------------------------


class _Source:
    """Lines of one generated function, with indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.level = 1

    def line(self, text: str) -> None:
        self.lines.append("    " * self.level + text)

    @contextmanager
    def indented(self) -> Iterator[None]:
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1


class _Generator:
    """The namespace generated functions live in, and the means to add to it."""

    _file_counter: ClassVar[Iterator[int]] = itertools.count()

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "__builtins__": __builtins__,
            "_dumps": cbor2.dumps,
            "_loads": cbor2.loads,
            "_chain": itertools.chain.from_iterable,
            "_Mismatch": _Mismatch,
            "_mismatch": _mismatch,
            "_encode_failure": _encode_failure,
            "_decode_failure": _decode_failure,
            "_encode_datetime": _encode_datetime,
            "_decode_datetime": _decode_datetime,
            "_encode_timedelta": _encode_timedelta,
            "_timedelta": timedelta,
            "_date_fromordinal": date.fromordinal,
            "_Decimal": Decimal,
            "_UUID": UUID,
            "_union_index": _union_index,
        }
        self._names = itertools.count()
        self._constants: dict[int, str] = {}

    def name(self, hint: str) -> str:
        return f"_{hint}{next(self._names)}"

    def constant(self, value: Any, hint: str) -> str:
        """A global name bound to ``value`` in the generated code."""
        name = self._constants.get(id(value))
        if name is None:
            name = self.name(hint)
            self.namespace[name] = value
            self._constants[id(value)] = name
        return name

    def define(self, name: str, params: str, source: _Source, comment: str) -> Any:
        comment = " ".join(comment.split())  # one line, whatever a type's repr holds
        text = "\n".join([f"def {name}({params}):", f"    # {comment}", *source.lines])
        filename = f"<pyweaver codec {next(self._file_counter)}: {comment}>"
        code = compile(text + "\n", filename, "exec")
        exec(code, self.namespace)
        # So tracebacks through generated code show its source.
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        return self.namespace[name]


# -- shapes: how one type crosses the wire ----------------------------------------------


class _Shape:
    """How values of one type are encoded and decoded.

    ``width`` is the number of array places the value takes when spliced (1 for all but
    records). ``encode(expr)`` returns Python expressions (one per place) computing the
    CBOR-ready form from the value expression ``expr`` (a name or attribute path, cheap
    to repeat). ``decode(source, places)`` emits statements checking the place variables
    and returns an expression for the decoded value.
    """

    width = 1
    spliced = False
    #: The CBOR-ready form is the value itself (no conversion when encoding).
    encode_identity = False
    #: The form can be a CBOR map key (hashable and scalar).
    map_key = False
    #: Runtime classes of values, for picking a union member.
    classes: tuple[type, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, var: str) -> str | None:
        """An inline expression that is true when ``var`` holds a wrong value, for shapes
        that decode to the form itself; ``None`` for all others."""
        return None

    def encode(self, expr: str) -> list[str]:
        raise NotImplementedError

    def decode(self, source: _Source, places: list[str]) -> str:
        raise NotImplementedError

    def single(self) -> _Shape:
        """This shape as it must be where exactly one array place is available."""
        return self

    def schema(self, seen: set[int]) -> str:
        return self.name


class _Scalar(_Shape):
    """A value that is its own CBOR form: None, bool, int, float, str, bytes, and unions
    of them. ``accepted`` lists the decoded Python types it takes."""

    encode_identity = True
    map_key = True

    def __init__(self, name: str, accepted: tuple[type, ...], generator: _Generator) -> None:
        super().__init__(name)
        self.accepted = accepted
        self.classes = accepted
        self._generator = generator

    def check(self, var: str) -> str:
        if self.accepted == (_NoneType,):
            return f"{var} is not None"
        if len(self.accepted) <= 3:
            return " and ".join(
                f"{var} is not None" if tp is _NoneType else f"type({var}) is not {tp.__name__}"
                for tp in self.accepted
            )
        accepted = self._generator.constant(frozenset(self.accepted), "accepted")
        return f"type({var}) not in {accepted}"

    def encode(self, expr: str) -> list[str]:
        return [expr]

    def decode(self, source: _Source, places: list[str]) -> str:
        (var,) = places
        source.line(f"if {self.check(var)}: raise _mismatch({self.name!r}, {var})")
        return var


class _Converted(_Shape):
    """A scalar whose CBOR form is computed: enums, datetime, date, timedelta, Decimal,
    UUID. Templates take the value (encode) or the form (decode) as ``{}``."""

    map_key = True

    def __init__(
        self,
        name: str,
        cls: type,
        encode_template: str,
        raw: tuple[type, ...],
        decode_template: str,
        *,
        map_key: bool = True,
        schema: str | None = None,
    ) -> None:
        super().__init__(name)
        self.classes = (cls,)
        self._encode_template = encode_template
        self._raw = raw
        self._decode_template = decode_template
        self.map_key = map_key
        self._schema = schema or name

    def encode(self, expr: str) -> list[str]:
        return [self._encode_template.format(expr)]

    def decode(self, source: _Source, places: list[str]) -> str:
        (var,) = places
        if self._raw:
            check = " and ".join(f"type({var}) is not {tp.__name__}" for tp in self._raw)
            source.line(f"if {check}: raise _mismatch({self.name!r}, {var})")
        return self._decode_template.format(var)

    def schema(self, seen: set[int]) -> str:
        return self._schema


class _Sequence(_Shape):
    """list, set, frozenset, tuple[T, ...]: an array of the elements' forms (spliced)."""

    def __init__(self, name: str, kind: type, element: _Shape, generator: _Generator) -> None:
        super().__init__(name)
        self.kind = kind
        self.element = element
        self.classes = (kind,)
        self.encode_identity = kind in (list, tuple) and element.encode_identity
        self._generator = generator
        self._decoder: str | None = None

    def encode(self, expr: str) -> list[str]:
        element = self.element
        if element.encode_identity:
            return [expr] if self.encode_identity else [f"[*{expr}]"]
        if element.spliced and element.width > 1:
            assert isinstance(element, _Record)
            return [f"[*_chain(map({element.encoder()}, {expr}))]"]
        var = self._generator.name("e")
        (form,) = element.encode(var)
        return [f"[{form} for {var} in {expr}]"]

    def decode(self, source: _Source, places: list[str]) -> str:
        return f"{self.decoder()}({places[0]})"

    def decoder(self) -> str:
        if self._decoder is None:
            self._decoder = self._generator.name("decode_seq")
            self._define_decoder(self._decoder)
        return self._decoder

    def _define_decoder(self, name: str) -> None:
        element = self.element
        body = _Source()
        body.line(f"if type(v) is not list: raise _mismatch('an array ({self.name})', v)")
        check = element.check("e")
        if element.spliced:
            assert isinstance(element, _Record)
            width = element.width
            if width > 1:
                body.line(
                    f"if len(v) % {width}: raise _Mismatch("
                    f"f'expected a multiple of {width} items, got {{len(v)}}')"
                )
            body.line("it = iter(v)")
            body.line(f"out = [*map({element.constructor()}, {', '.join(['it'] * width)})]")
        elif check is not None:
            body.line("for e in v:")
            with body.indented():
                body.line(f"if {check}: raise _mismatch({element.name!r}, e)")
            body.line("out = v")
        else:
            body.line("out = []")
            body.line("append = out.append")
            body.line("for e in v:")
            with body.indented():
                value = element.decode(body, ["e"])
                body.line(f"append({value})")
        body.line("return out" if self.kind is list else f"return {self.kind.__name__}(out)")
        self._generator.define(name, "v", body, self.name)

    def schema(self, seen: set[int]) -> str:
        if self.kind is tuple:
            return f"tuple[{self.element.schema(seen)}, ...]"
        return f"{self.kind.__name__}[{self.element.schema(seen)}]"


class _Dict(_Shape):
    """dict: a CBOR map when keys are scalars, else an array of alternating keys and
    values (each spliced)."""

    classes = (dict,)

    def __init__(self, name: str, key: _Shape, value: _Shape, generator: _Generator) -> None:
        super().__init__(name)
        self.as_map = key.map_key and not key.spliced
        self.key = key if not self.as_map else key.single()
        self.value = value.single() if self.as_map else value
        self.encode_identity = (
            self.as_map and self.key.encode_identity and self.value.encode_identity
        )
        self._generator = generator
        self._decoder: str | None = None
        self._pair_encoder: str | None = None

    def encode(self, expr: str) -> list[str]:
        if self.encode_identity:
            return [expr]
        if self.as_map:
            k, v = self._generator.name("k"), self._generator.name("v")
            (key_form,) = self.key.encode(k)
            (value_form,) = self.value.encode(v)
            return [f"{{{key_form}: {value_form} for {k}, {v} in {expr}.items()}}"]
        return [f"[*_chain(map({self.pair_encoder()}, {expr}.items()))]"]

    def pair_encoder(self) -> str:
        if self._pair_encoder is None:
            self._pair_encoder = self._generator.name("encode_pair")
            body = _Source()
            body.line("k, v = kv")
            body.line(f"return ({', '.join([*self.key.encode('k'), *self.value.encode('v')])},)")
            self._generator.define(self._pair_encoder, "kv", body, self.name)
        return self._pair_encoder

    def decode(self, source: _Source, places: list[str]) -> str:
        if self._decoder is None:
            self._decoder = self._generator.name("decode_dict")
            if self.as_map:
                self._define_map_decoder(self._decoder)
            else:
                self._define_pairs_decoder(self._decoder)
        return f"{self._decoder}({places[0]})"

    def _define_map_decoder(self, name: str) -> None:
        body = _Source()
        body.line(f"if type(v) is not dict: raise _mismatch('a map ({self.name})', v)")
        key_check, value_check = self.key.check("k"), self.value.check("x")
        if key_check is not None and value_check is not None:
            body.line("for k, x in v.items():")
            with body.indented():
                body.line(f"if {key_check}: raise _mismatch({self.key.name!r}, k)")
                body.line(f"if {value_check}: raise _mismatch({self.value.name!r}, x)")
            body.line("return v")
        else:
            body.line("out = {}")
            body.line("for k, x in v.items():")
            with body.indented():
                key = self.key.decode(body, ["k"])
                value = self.value.decode(body, ["x"])
                body.line(f"out[{key}] = {value}")
            body.line("return out")
        self._generator.define(name, "v", body, self.name)

    def _define_pairs_decoder(self, name: str) -> None:
        generator = self._generator
        width = self.key.width + self.value.width
        pair = generator.name("decode_pair")
        places = [f"s{i}" for i in range(width)]
        pair_body = _Source()
        key = self.key.decode(pair_body, places[: self.key.width])
        value = self.value.decode(pair_body, places[self.key.width :])
        pair_body.line(f"return ({key}, {value})")
        generator.define(pair, ", ".join(places), pair_body, f"{self.name} item")
        body = _Source()
        body.line(f"if type(v) is not list: raise _mismatch('an array ({self.name})', v)")
        body.line(
            f"if len(v) % {width}: raise _Mismatch("
            f"f'expected a multiple of {width} items, got {{len(v)}}')"
        )
        body.line("it = iter(v)")
        body.line(f"return dict(map({pair}, {', '.join(['it'] * width)}))")
        generator.define(name, "v", body, self.name)

    def schema(self, seen: set[int]) -> str:
        return f"dict[{self.key.schema(seen)}, {self.value.schema(seen)}]"


class _Union(_Shape):
    """Optional[T] with T not a scalar, and unions whose members cannot be told apart
    by their CBOR form alone (those travel as ``[member index, member form]``)."""

    def __init__(
        self, name: str, members: list[_Shape], optional: bool, generator: _Generator
    ) -> None:
        super().__init__(name)
        self.members = [member.single() for member in members]
        self.optional = optional
        self.tagged = len(self.members) > 1
        self.classes = tuple(cls for member in self.members for cls in member.classes)
        if optional:
            self.classes += (_NoneType,)
        self._generator = generator
        self._encoder: str | None = None
        self._decoder: str | None = None
        if self.tagged:
            self._dispatch = self._dispatch_table()

    def _dispatch_table(self) -> dict[type, int]:
        table: dict[type, int] = {}
        for index, member in enumerate(self.members):
            for cls in member.classes[:1]:
                other = table.get(cls)
                if other is not None:
                    raise _Unsupported(
                        (self.name,),
                        self.name,
                        f"its members {self.members[other].name} and {member.name} are "
                        f"both {cls.__name__} at runtime, so a value's member is ambiguous",
                    )
                table[cls] = index
        # What Python's typing accepts in place of a member: bool for int, int for float.
        for accepted, member_cls in ((bool, int), (int, float), (bool, float)):
            if accepted not in table and member_cls in table:
                table[accepted] = table[member_cls]
        return table

    def encode(self, expr: str) -> list[str]:
        if not self.tagged:
            (member,) = self.members
            if member.encode_identity:
                return [expr]
            (form,) = member.encode(expr)
            return [f"(None if {expr} is None else {form})"]
        if self._encoder is None:
            self._encoder = self._generator.name("encode_union")
            self._define_encoder(self._encoder)
        return [f"{self._encoder}({expr})"]

    def _define_encoder(self, name: str) -> None:
        generator = self._generator
        table = generator.constant(self._dispatch, "dispatch")
        classes = generator.constant(tuple(m.classes for m in self.members), "member_classes")
        body = _Source()
        if self.optional:
            body.line("if v is None: return None")
        body.line(f"i = {table}.get(type(v))")
        body.line(f"if i is None: i = _union_index(v, {classes})")
        for index, member in enumerate(self.members):
            (form,) = member.encode("v")
            body.line(f"if i == {index}: return [{index}, {form}]")
        generator.define(name, "v", body, self.name)

    def decode(self, source: _Source, places: list[str]) -> str:
        (var,) = places
        if not self.tagged:
            result = self._generator.name("value")
            source.line(f"if {var} is None: {result} = None")
            source.line("else:")
            with source.indented():
                value = self.members[0].decode(source, [var])
                source.line(f"{result} = {value}")
            return result
        if self._decoder is None:
            self._decoder = self._generator.name("decode_union")
            self._define_decoder(self._decoder)
        return f"{self._decoder}({var})"

    def _define_decoder(self, name: str) -> None:
        body = _Source()
        if self.optional:
            body.line("if v is None: return None")
        body.line(
            "if type(v) is not list or len(v) != 2: "
            f"raise _mismatch('[member index, value] ({self.name})', v)"
        )
        body.line("i, x = v")
        for index, member in enumerate(self.members):
            body.line(f"if i == {index} and type(i) is int:")
            with body.indented():
                value = member.decode(body, ["x"])
                body.line(f"return {value}")
        body.line("raise _mismatch('a member index', i)")
        self._generator.define(name, "v", body, self.name)

    def schema(self, seen: set[int]) -> str:
        members = [member.schema(seen) for member in self.members]
        if self.optional:
            members.append("None")
        return " | ".join(members)


class _Record(_Shape):
    """An AutoMarshal (or attrs) class, or a fixed-size tuple: its fields' forms in
    order, spliced into the enclosing array unless ``boxed``."""

    def __init__(
        self, name: str, cls: type, generator: _Generator, *, recursive: bool = False
    ) -> None:
        super().__init__(name)
        self.cls = cls
        self.classes = (cls,)
        self.recursive = recursive
        # A recursive class is referenced while its fields are still being built: it is
        # boxed whatever its fields turn out to be.
        self.boxed = recursive
        self.spliced = not recursive
        self.fields: list[tuple[str, _Shape]] = []
        self._generator = generator
        self._encoder: str | None = None
        self._constructor: str | None = None
        self._boxed_decoder: str | None = None

    def finish(self, fields: list[tuple[str, _Shape]]) -> None:
        self.fields = fields
        self.inner_width = sum(shape.width for _, shape in fields)
        self.boxed = self.recursive or self.inner_width == 0
        self.spliced = not self.boxed
        self.width = 1 if self.boxed else self.inner_width

    def single(self) -> _Shape:
        return self if self.boxed else _Boxed(self)

    # encoding

    def field_expr(self, expr: str, field: str) -> str:
        return f"{expr}[{field}]" if self.cls is tuple else f"{expr}.{field}"

    def inner_forms(self, expr: str) -> list[str]:
        forms: list[str] = []
        for field, shape in self.fields:
            forms.extend(shape.encode(self.field_expr(expr, field)))
        return forms

    def encode(self, expr: str) -> list[str]:
        if self.boxed:
            return [f"{self.encoder()}({expr})"]
        return self.inner_forms(expr)

    def encoder(self) -> str:
        """A function: value -> its inner forms (a tuple or list)."""
        if self._encoder is None:
            self._encoder = self._generator.name("encode_record")
            # Name first: a recursive class's forms call this very function.
            forms = self.inner_forms("o")
            paths = [form[2:] for form in forms if form.startswith("o.")]
            plain = len(paths) == len(forms) and all(
                path.replace(".", "").replace("_", "a").isalnum() for path in paths
            )
            if plain and len(forms) > 1 and not self.boxed:
                # All forms are attribute reads: one C-level getter does them all.
                self._generator.namespace[self._encoder] = operator.attrgetter(*paths)
            else:
                body = _Source()
                body.line(f"return [{', '.join(forms)}]")
                self._generator.define(self._encoder, "o", body, self.name)
        return self._encoder

    # decoding

    def decode(self, source: _Source, places: list[str]) -> str:
        if self.boxed:
            return f"{self.boxed_decoder()}({places[0]})"
        return f"{self.constructor()}({', '.join(places)})"

    def boxed_decoder(self) -> str:
        if self._boxed_decoder is None:
            self._boxed_decoder = self._generator.name("decode_boxed")
            body = _Source()
            body.line(
                f"if type(v) is not list or len(v) != {self.inner_width}: "
                f"raise _mismatch('an array of {self.inner_width} ({self.name})', v)"
            )
            body.line(f"return {self.constructor()}(*v)")
            self._generator.define(self._boxed_decoder, "v", body, self.name)
        return self._boxed_decoder

    def constructor(self) -> str:
        """A function: the inner forms (one argument each) -> the value."""
        if self._constructor is None:
            self._constructor = self._generator.name("construct")
            self._define_constructor(self._constructor)
        return self._constructor

    def _define_constructor(self, name: str) -> None:
        generator = self._generator
        places = [f"s{i}" for i in range(self.inner_width)]
        body = _Source()
        values: list[str] = []
        position = 0
        for field, shape in self.fields:
            field_places = places[position : position + shape.width]
            position += shape.width
            body.line("try:")
            with body.indented():
                value = shape.decode(body, field_places)
                values.append(generator.name("f"))
                body.line(f"{values[-1]} = {value}")
            body.line("except _Mismatch as exc:")
            label = f"{self.name}[{field}]" if self.cls is tuple else f"{self.name}.{field}"
            with body.indented():
                body.line(f"raise exc.within({label!r})")
        if self.cls is tuple:
            body.line(f"return ({''.join(value + ', ' for value in values)})")
        else:
            self._emit_build(body, values)
        generator.define(name, ", ".join(places), body, self.name)

    def _emit_build(self, body: _Source, values: list[str]) -> None:
        generator = self._generator
        cls = self.cls
        new = generator.constant(cls.__new__, "new")
        body.line(f"o = {new}({generator.constant(cls, 'cls')})")
        uses_dict = False
        for (field, _), value in zip(self.fields, values, strict=True):
            descriptor = _slot_descriptor(cls, field)
            if descriptor is not None:
                setter = generator.constant(descriptor.__set__, f"set_{field}")
                body.line(f"{setter}(o, {value})")
            else:
                if not uses_dict:
                    body.line("d = o.__dict__")
                    uses_dict = True
                body.line(f"d[{field!r}] = {value}")
        if issubclass(cls, BaseException):
            # What attrs' generated __init__ does for an exception: args = init fields.
            init_values = [
                value
                for field_def, value in zip(attrs.fields(_any(cls)), values, strict=True)
                if field_def.init
            ]
            set_args = generator.constant(BaseException.__dict__["args"].__set__, "set_args")
            body.line(f"{set_args}(o, ({''.join(v + ', ' for v in init_values)}))")
        body.line("return o")

    def schema(self, seen: set[int]) -> str:
        if self.cls is tuple:
            return f"tuple[{', '.join(shape.schema(seen) for _, shape in self.fields)}]"
        if id(self) in seen:
            return self.name
        seen.add(id(self))
        fields = ", ".join(f"{field}: {shape.schema(seen)}" for field, shape in self.fields)
        return f"{self.name}{{{fields}}}"


class _Boxed(_Shape):
    """A spliced record in a place that holds one value: an array of its inner forms."""

    def __init__(self, record: _Record) -> None:
        super().__init__(record.name)
        self.record = record
        self.classes = record.classes

    def encode(self, expr: str) -> list[str]:
        return [f"[{', '.join(self.record.inner_forms(expr))}]"]

    def decode(self, source: _Source, places: list[str]) -> str:
        return f"{self.record.boxed_decoder()}({places[0]})"

    def schema(self, seen: set[int]) -> str:
        return self.record.schema(seen)


def _any(value: Any) -> Any:
    return value


def _slot_descriptor(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if isinstance(found, types.MemberDescriptorType):
            return found
    return None


# -- the codec --------------------------------------------------------------------------


@attrs.frozen(eq=False)
class MethodCodec:
    """Encoders and decoders of one method, compiled at registration.

    Attributes (plain functions, called directly on the hot path):
        encode_args(args: tuple) -> bytes
        decode_args(data: bytes) -> tuple
        encode_result(value) -> bytes: a successful return.
        encode_exception(exc: BaseException) -> bytes: an exception the method raised.
        decode_result(data: bytes) -> value, or raises the decoded exception.
        copy_args(args) -> tuple: encode + decode (the "copy every call" mode).
        copy_result(value) -> value: encode + decode.
        schema: a canonical text of the argument and result types (nested classes
            spelled out), for fingerprinting an app's methods.

    Encoding or decoding failures raise :class:`~pyweaver.RemoteCallError` naming the
    method (and, when decoding, the parameter and field at fault).
    """

    encode_args: Callable[[tuple[Any, ...]], bytes]
    decode_args: Callable[[bytes], tuple[Any, ...]]
    encode_result: Callable[[Any], bytes]
    encode_exception: Callable[[BaseException], bytes]
    decode_result: Callable[[bytes], Any]
    copy_args: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    copy_result: Callable[[Any], Any]
    schema: str


class Codec:
    """Judges types and compiles method codecs; one per process.

    Args:
        plain_attrs: also accept attrs classes that do not derive from
            ``weaver.AutoMarshal`` (for pyweaver's own messages; an application's types
            must be AutoMarshal).
    """

    def __init__(self, *, plain_attrs: bool = False) -> None:
        self._plain_attrs = plain_attrs
        self._generator = _Generator()
        self._shapes: dict[Any, _Shape] = {}
        self._recursive: dict[type, bool] = {}
        self._exception_codecs: dict[type, tuple[str, str] | None] = {}
        self._decode_exception_method = self._decode_exception

    # -- public API ---------------------------------------------------------------------

    def check_type(self, tp: Any, where: str) -> None:
        """Raise :class:`~pyweaver.RegistrationError` unless values of ``tp`` can cross
        the wire. The message starts with ``where`` (e.g. ``"app.Reverser.reverse
        parameter 's'"``) and names the offending type and the path to it."""
        self._shape_or_error(tp, where)

    def method_codec(
        self,
        arg_types: Sequence[Any],
        result_type: Any,
        where: str,
        *,
        arg_names: Sequence[str] | None = None,
    ) -> MethodCodec:
        """Compile the codec of a method taking ``arg_types`` and returning
        ``result_type``. ``where`` names the method (``"app.Reverser.reverse"``);
        ``arg_names``, when given, name the parameters in messages."""
        names = list(arg_names) if arg_names is not None else None
        if names is not None and len(names) != len(arg_types):
            raise ValueError("arg_names and arg_types differ in length")
        labels = [
            f"parameter {names[i]!r}" if names is not None else f"argument {i}"
            for i in range(len(arg_types))
        ]
        arg_shapes = [
            self._shape_or_error(tp, f"{where} {label}")
            for tp, label in zip(arg_types, labels, strict=True)
        ]
        result_shape = self._shape_or_error(result_type, f"{where} result")
        encode_args = self._define_encode_args(arg_shapes, where)
        decode_args = self._define_decode_args(arg_shapes, labels, where)
        encode_result = self._define_encode_result(result_shape, where)
        decode_result = self._define_decode_result(result_shape, where)

        def copy_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
            return decode_args(encode_args(args))  # type: ignore[no-any-return]

        def copy_result(value: Any) -> Any:
            return decode_result(encode_result(value))

        seen: set[int] = set()
        arg_schema = ", ".join(shape.schema(seen) for shape in arg_shapes)
        return MethodCodec(
            encode_args=encode_args,
            decode_args=decode_args,
            encode_result=encode_result,
            encode_exception=self.encode_exception,
            decode_result=decode_result,
            copy_args=copy_args,
            copy_result=copy_result,
            schema=f"({arg_schema}) -> {result_shape.schema(seen)}",
        )

    def encode_exception(self, exc: BaseException) -> bytes:
        """The result message for an exception raised by a method. Never raises: an
        exception that cannot travel as itself travels as a RemoteException."""
        if isinstance(exc, RemoteException):
            # Raised by a call further down the line: pass it on unchanged.
            return cbor2.dumps(
                [
                    _OTHER_EXCEPTION,
                    _text(exc.type_name),
                    _text(exc.message),
                    _text(exc.remote_traceback),
                ]
            )
        cls = type(exc)
        name = full_name(cls)
        message = _text(_describe_exception(exc))
        try:
            remote_traceback = _text("".join(traceback.format_exception(exc)))
        except Exception:
            remote_traceback = ""
        codec = self._exception_codec(cls)
        if codec is not None:
            encoder = self._generator.namespace[codec[0]]
            try:
                return cbor2.dumps(
                    [_AUTOMARSHAL_EXCEPTION, name, message, remote_traceback, encoder(exc)]
                )
            except Exception:
                pass  # a field holds a value its type does not allow: degrade
        return cbor2.dumps([_OTHER_EXCEPTION, name, message, remote_traceback])

    # -- shapes -------------------------------------------------------------------------

    def _shape_or_error(self, tp: Any, where: str) -> _Shape:
        try:
            return self._shape(tp, (_type_name(tp),))
        except _Unsupported as exc:
            raise RegistrationError(f"{where}: {exc.describe()}") from None

    def _shape(self, tp: Any, trail: tuple[str, ...]) -> _Shape:
        tp = _normalize(tp)
        try:
            cached = self._shapes.get(tp)
        except TypeError:  # unhashable (Annotated metadata, odd aliases)
            cached = None
        if cached is not None:
            return cached
        shape = self._build(tp, trail)
        try:
            self._shapes[tp] = shape
        except TypeError:
            pass
        return shape

    def _unsupported(self, tp: Any, trail: tuple[str, ...], reason: str) -> _Unsupported:
        return _Unsupported(trail, _type_name(tp), reason)

    def _build(self, tp: Any, trail: tuple[str, ...]) -> _Shape:
        generator = self._generator
        name = _type_name(tp)
        scalar = _SCALARS.get(tp)
        if scalar is not None:
            return _Scalar(name, scalar, generator)
        converted = _converted(tp, name, generator)
        if converted is not None:
            return converted
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(tp, name, args, trail)
        if origin in _SEQUENCE_ORIGINS or tp in _SEQUENCE_ORIGINS:
            if not args:
                raise self._unsupported(
                    tp, trail, f"{name} needs an element type, e.g. {name}[int]"
                )
            element = self._shape(args[0], trail)
            return _Sequence(name, _SEQUENCE_ORIGINS[origin], element, generator)
        if origin is tuple or tp is tuple:
            return self._tuple(tp, name, args, trail)
        if origin in _MAPPING_ORIGINS or tp in _MAPPING_ORIGINS:
            if len(args) != 2:
                raise self._unsupported(
                    tp, trail, f"{name} needs key and value types, e.g. dict[str, int]"
                )
            key, value = self._shape(args[0], trail), self._shape(args[1], trail)
            return _Dict(name, key, value, generator)
        if isinstance(origin, type) and (issubclass(origin, AutoMarshal) or attrs.has(origin)):
            raise self._unsupported(tp, trail, "generic AutoMarshal classes are not supported")
        if isinstance(tp, type) and self._is_record_class(tp):
            return self._record(tp, name, trail)
        raise self._unsupported(tp, trail, _why_not(tp, origin))

    def _is_record_class(self, cls: type) -> bool:
        if issubclass(cls, AutoMarshal):
            ensure_attrs(cls)
            return True
        return self._plain_attrs and attrs.has(cls)

    def _union(self, tp: Any, name: str, args: tuple[Any, ...], trail: tuple[str, ...]) -> _Shape:
        optional = any(_normalize(arg) is _NoneType for arg in args)
        members = [self._shape(arg, trail) for arg in args if _normalize(arg) is not _NoneType]
        scalars = [m for m in members if isinstance(m, _Scalar)]
        if len(scalars) == len(members):
            primaries = [m.accepted[0] for m in scalars]
            if len(set(primaries)) == len(primaries):
                # Told apart by their CBOR type alone: no tag needed.
                accepted = tuple(dict.fromkeys(t for m in scalars for t in m.accepted))
                if optional:
                    accepted = (_NoneType, *accepted)
                return _Scalar(name, accepted, self._generator)
        try:
            return _Union(name, members, optional, self._generator)
        except _Unsupported as exc:
            raise _Unsupported(trail, name, exc.reason) from None

    def _tuple(self, tp: Any, name: str, args: tuple[Any, ...], trail: tuple[str, ...]) -> _Shape:
        if tp is tuple:
            raise self._unsupported(tp, trail, "tuple needs element types, e.g. tuple[int, ...]")
        if len(args) == 2 and args[1] is Ellipsis:
            element = self._shape(args[0], trail)
            return _Sequence(name, tuple, element, self._generator)
        if args == ((),):  # tuple[()]
            args = ()
        record = _Record(name, tuple, self._generator)
        record.finish([(str(i), self._shape(arg, trail)) for i, arg in enumerate(args)])
        return record

    def _record(self, cls: type, name: str, trail: tuple[str, ...]) -> _Shape:
        if getattr(cls, "__parameters__", ()):
            raise self._unsupported(cls, trail, "generic AutoMarshal classes are not supported")
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise self._unsupported(
                cls, trail, f"cannot resolve its annotations: {type(exc).__name__}: {exc}"
            ) from None
        record = _Record(name, cls, self._generator, recursive=self._is_recursive(cls))
        # Registered before its fields are built, so a class that contains itself finds
        # itself (boxed) instead of recursing.
        self._shapes[cls] = record
        fields: list[tuple[str, _Shape]] = []
        try:
            for field in attrs.fields(cls):
                field_trail = (*trail, f"{name}.{field.name}")
                field_type = hints.get(field.name, field.type)
                if field_type is None:
                    raise _Unsupported(
                        field_trail, f"{name}.{field.name}", "the field has no type annotation"
                    )
                fields.append((field.name, self._shape(field_type, field_trail)))
        except BaseException:
            del self._shapes[cls]
            raise
        record.finish(fields)
        return record

    def _is_recursive(self, cls: type) -> bool:
        """Whether ``cls`` can contain itself (then it is always boxed)."""
        known = self._recursive.get(cls)
        if known is not None:
            return known
        seen: set[type] = set()
        pending = list(_classes_in_fields(cls))
        recursive = False
        while pending:
            current = pending.pop()
            if current is cls:
                recursive = True
                break
            if current in seen:
                continue
            seen.add(current)
            pending.extend(_classes_in_fields(current))
        self._recursive[cls] = recursive
        return recursive

    # -- exceptions ---------------------------------------------------------------------

    def _exception_codec(self, cls: type) -> tuple[str, str] | None:
        """(encoder, decoder) names for an exception class that travels as itself."""
        if cls in self._exception_codecs:
            return self._exception_codecs[cls]
        codec: tuple[str, str] | None = None
        if issubclass(cls, AutoMarshal) or (self._plain_attrs and attrs.has(cls)):
            try:
                shape = self._shape(cls, (_type_name(cls),))
            except _Unsupported:
                shape = None
            if isinstance(shape, _Record):
                codec = (shape.encoder(), shape.boxed_decoder())
        self._exception_codecs[cls] = codec
        return codec

    def _decode_exception(self, message: Any, where: str) -> BaseException:
        """The exception a non-success result message carries."""
        try:
            tag = message[0]
            if tag == _OTHER_EXCEPTION and len(message) == 4:
                _, name, text, remote_traceback = message
                _check_texts(name, text, remote_traceback)
                return RemoteException(name, text, remote_traceback)
            if tag == _AUTOMARSHAL_EXCEPTION and len(message) == 5:
                _, name, text, remote_traceback, fields = message
                _check_texts(name, text, remote_traceback)
                cls = lookup(name)
                codec = None
                if cls is not None and issubclass(cls, BaseException):
                    codec = self._exception_codec(cls)
                if codec is None:
                    return RemoteException(name, text, remote_traceback)
                try:
                    exc: BaseException = self._generator.namespace[codec[1]](fields)
                except Exception:
                    return RemoteException(name, text, remote_traceback)
                if remote_traceback:
                    exc.add_note(f"remote traceback:\n{remote_traceback.rstrip()}")
                return exc
            raise _mismatch("a result tag", tag)
        except Exception as exc:
            return _decode_failure(where, "the result", exc)

    # -- generated entry points ---------------------------------------------------------

    def _define_encode_args(self, shapes: list[_Shape], where: str) -> Any:
        generator = self._generator
        names = [f"a{i}" for i in range(len(shapes))]
        forms = [
            form for var, shape in zip(names, shapes, strict=True) for form in shape.encode(var)
        ]
        body = _Source()
        body.line("try:")
        with body.indented():
            body.line(f"({''.join(n + ', ' for n in names)}) = args")
            body.line(f"return _dumps([{', '.join(forms)}])")
        body.line("except Exception as exc:")
        with body.indented():
            body.line(f"raise _encode_failure({where!r}, 'the arguments', exc) from exc")
        return generator.define(generator.name("encode_args"), "args", body, f"{where} arguments")

    def _define_decode_args(self, shapes: list[_Shape], labels: list[str], where: str) -> Any:
        generator = self._generator
        width = sum(shape.width for shape in shapes)
        places = [f"s{i}" for i in range(width)]
        body = _Source()
        body.line("try:")
        with body.indented():
            body.line("v = _loads(data)")
            body.line(
                f"if type(v) is not list or len(v) != {width}: "
                f"raise _mismatch('an array of {width} items', v)"
            )
            body.line(f"({''.join(p + ', ' for p in places)}) = v")
            values: list[str] = []
            position = 0
            for shape, label in zip(shapes, labels, strict=True):
                body.line("try:")
                with body.indented():
                    value = shape.decode(body, places[position : position + shape.width])
                    values.append(generator.name("arg"))
                    body.line(f"{values[-1]} = {value}")
                body.line("except _Mismatch as exc:")
                with body.indented():
                    body.line(f"raise exc.within({label!r})")
                position += shape.width
            body.line(f"return ({''.join(v + ', ' for v in values)})")
        body.line("except Exception as exc:")
        with body.indented():
            body.line(f"raise _decode_failure({where!r}, 'the arguments', exc) from exc")
        return generator.define(generator.name("decode_args"), "data", body, f"{where} arguments")

    def _define_encode_result(self, shape: _Shape, where: str) -> Any:
        generator = self._generator
        body = _Source()
        body.line("try:")
        with body.indented():
            body.line(f"return _dumps([{_OK}, {', '.join(shape.encode('value'))}])")
        body.line("except Exception as exc:")
        with body.indented():
            body.line(f"raise _encode_failure({where!r}, 'the result', exc) from exc")
        return generator.define(generator.name("encode_result"), "value", body, f"{where} result")

    def _define_decode_result(self, shape: _Shape, where: str) -> Any:
        generator = self._generator
        places = [f"s{i}" for i in range(shape.width)]
        decode_exception = generator.constant(self._decode_exception_method, "decode_exception")
        body = _Source()
        body.line("try:")
        with body.indented():
            body.line("v = _loads(data)")
            body.line("if type(v) is not list or not v: raise _mismatch('a result array', v)")
            body.line("tag = v[0]")
            body.line(f"if tag == {_OK} and type(tag) is int:")
            with body.indented():
                body.line(
                    f"if len(v) != {1 + shape.width}: "
                    f"raise _mismatch('an array of {1 + shape.width} items', v)"
                )
                body.line(f"(_, {''.join(p + ', ' for p in places)}) = v")
                body.line("try:")
                with body.indented():
                    value = shape.decode(body, places)
                    body.line(f"return {value}")
                body.line("except _Mismatch as exc:")
                with body.indented():
                    body.line("raise exc.within('result')")
        body.line("except Exception as exc:")
        with body.indented():
            body.line(f"raise _decode_failure({where!r}, 'the result', exc) from exc")
        # Outside the try: the method's own exception is not a decoding failure.
        body.line(f"raise {decode_exception}(v, {where!r})")
        return generator.define(generator.name("decode_result"), "data", body, f"{where} result")


def _check_texts(*values: Any) -> None:
    for value in values:
        if type(value) is not str:
            raise _mismatch("text", value)


_SCALARS: dict[Any, tuple[type, ...]] = {
    _NoneType: (_NoneType,),
    bool: (bool,),
    int: (int, bool),
    float: (float, int, bool),
    str: (str,),
    bytes: (bytes,),
}


def _converted(tp: Any, name: str, generator: _Generator) -> _Shape | None:
    if not isinstance(tp, type):
        return None
    if issubclass(tp, enum.Enum):
        members = list(tp)
        by_value = all(type(m._value_) in (int, str) for m in members)
        listing = ",".join(f"{m._name_}={m._value_!r}" if by_value else m._name_ for m in members)
        schema = f"{name}(enum by {'value' if by_value else 'name'}: {listing})"
        if by_value:
            decoder = generator.constant(_enum_decoder(tp), "enum")
            return _Converted(name, tp, "{}._value_", (), decoder + "({})", schema=schema)
        enum_cls = generator.constant(tp, "enum")
        return _Converted(name, tp, "{}._name_", (str,), enum_cls + "[{}]", schema=schema)
    if tp is datetime:
        return _Converted(
            name, tp, "_encode_datetime({})", (), "_decode_datetime({})", map_key=False
        )
    if tp is date:
        return _Converted(name, tp, "{}.toordinal()", (int,), "_date_fromordinal({})")
    if tp is timedelta:
        return _Converted(name, tp, "_encode_timedelta({})", (int,), "_timedelta(0, 0, {})")
    if tp is Decimal:
        return _Converted(name, tp, "str({})", (str,), "_Decimal({})")
    if tp is UUID:
        return _Converted(name, tp, "{}.bytes", (bytes,), "_UUID(bytes={})")
    return None


_CALLABLE_TYPES = (
    collections.abc.Callable,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.LambdaType,
    functools.partial,
)


def _why_not(tp: Any, origin: Any) -> str:
    """Why ``tp`` cannot cross the wire, with what to do instead."""
    if tp is typing.Any:
        return "Any says nothing about the value; use a concrete type"
    if tp is object:
        return "object says nothing about the value; use a concrete type"
    if isinstance(tp, str | typing.ForwardRef):
        return "an unresolved forward reference; define the type before use"
    if isinstance(tp, typing.TypeVar | typing.ParamSpec):
        return "type variables are not supported; use a concrete type"
    if origin is collections.abc.Callable or tp in _CALLABLE_TYPES:
        return "callables cannot cross a process boundary"
    if origin is typing.Literal:
        return "Literal is not supported; use an enum"
    if origin is type or tp is type:
        return "classes cannot cross a process boundary"
    if not isinstance(tp, type) and origin is None:
        return "it is not a type (live objects such as locks and streams cannot cross)"
    if isinstance(tp, type) and attrs.has(tp):
        return "derive it from weaver.AutoMarshal"
    if isinstance(tp, type):
        return (
            "only None, bool, int, float, str, bytes, containers of them, enums, datetime, "
            "date, timedelta, Decimal, UUID and weaver.AutoMarshal classes can; make it a "
            "weaver.AutoMarshal subclass with annotated fields"
        )
    return "not a supported type"


def _classes_in(tp: Any) -> Iterator[type]:
    """Record classes mentioned in a type (not looking into their fields)."""
    tp = _normalize(tp)
    if isinstance(tp, type) and (issubclass(tp, AutoMarshal) or attrs.has(tp)):
        yield tp
        return
    for arg in typing.get_args(tp):
        if arg is not Ellipsis:
            yield from _classes_in(arg)


def _classes_in_fields(cls: type) -> Iterator[type]:
    if issubclass(cls, AutoMarshal):
        ensure_attrs(cls)
    if not attrs.has(cls):
        return
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        return  # reported when the shape is built
    for field in attrs.fields(cls):
        yield from _classes_in(hints.get(field.name, field.type))
