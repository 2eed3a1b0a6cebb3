"""Shapes: how values of one type cross the wire, as generated code.

A :class:`Shape` is built once per type (by :class:`~._types.Shapes`) and writes the
Python source that encodes and decodes values of that type (compiled by
:mod:`._compile`). Every peer runs the same code (the call handshake checks a schema
fingerprint, see :meth:`Shape.schema`), so values travel **positionally**, without field
names or type tags, as in Service Weaver's own encoding. Each type has a CBOR form:

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

Decoding checks every value's type; objects are rebuilt field by field without calling
``__init__`` (like ``copy`` and ``pickle`` do), so validators and ``__attrs_post_init__``
do not run again.
"""

from __future__ import annotations

import enum
import operator
import types
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import NoneType
from typing import Any
from uuid import UUID

import attrs

from pyweaver._runtime._codec._compile import Generator, Source
from pyweaver._runtime._codec._errors import _Unsupported

__all__ = [
    "SCALARS",
    "BoxedShape",
    "ConvertedShape",
    "DictShape",
    "RecordShape",
    "ScalarShape",
    "SequenceShape",
    "Shape",
    "UnionShape",
    "converted_shape",
]


class Shape:
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

    def decode(self, source: Source, places: list[str]) -> str:
        raise NotImplementedError

    def single(self) -> Shape:
        """This shape as it must be where exactly one array place is available."""
        return self

    def schema(self, seen: set[int]) -> str:
        return self.name


class ScalarShape(Shape):
    """A value that is its own CBOR form: None, bool, int, float, str, bytes, and unions
    of them. ``accepted`` lists the decoded Python types it takes."""

    encode_identity = True
    map_key = True

    def __init__(self, name: str, accepted: tuple[type, ...], generator: Generator) -> None:
        super().__init__(name)
        self.accepted = accepted
        self.classes = accepted
        self._generator = generator

    def check(self, var: str) -> str:
        if self.accepted == (NoneType,):
            return f"{var} is not None"
        if len(self.accepted) <= 3:
            return " and ".join(
                f"{var} is not None" if tp is NoneType else f"type({var}) is not {tp.__name__}"
                for tp in self.accepted
            )
        accepted = self._generator.constant(frozenset(self.accepted), "accepted")
        return f"type({var}) not in {accepted}"

    def encode(self, expr: str) -> list[str]:
        return [expr]

    def decode(self, source: Source, places: list[str]) -> str:
        (var,) = places
        source.line(f"if {self.check(var)}: raise _mismatch({self.name!r}, {var})")
        return var


class ConvertedShape(Shape):
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

    def decode(self, source: Source, places: list[str]) -> str:
        (var,) = places
        if self._raw:
            check = " and ".join(f"type({var}) is not {tp.__name__}" for tp in self._raw)
            source.line(f"if {check}: raise _mismatch({self.name!r}, {var})")
        return self._decode_template.format(var)

    def schema(self, seen: set[int]) -> str:
        return self._schema


class SequenceShape(Shape):
    """list, set, frozenset, tuple[T, ...]: an array of the elements' forms (spliced)."""

    def __init__(self, name: str, kind: type, element: Shape, generator: Generator) -> None:
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
            assert isinstance(element, RecordShape)
            return [f"[*_chain(map({element.encoder()}, {expr}))]"]
        var = self._generator.name("e")
        (form,) = element.encode(var)
        return [f"[{form} for {var} in {expr}]"]

    def decode(self, source: Source, places: list[str]) -> str:
        return f"{self.decoder()}({places[0]})"

    def decoder(self) -> str:
        if self._decoder is None:
            self._decoder = self._generator.name("decode_seq")
            self._define_decoder(self._decoder)
        return self._decoder

    def _define_decoder(self, name: str) -> None:
        element = self.element
        body = Source()
        body.line(f"if type(v) is not list: raise _mismatch('an array ({self.name})', v)")
        check = element.check("e")
        if element.spliced:
            assert isinstance(element, RecordShape)
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


class DictShape(Shape):
    """dict: a CBOR map when keys are scalars, else an array of alternating keys and
    values (each spliced)."""

    classes = (dict,)

    def __init__(self, name: str, key: Shape, value: Shape, generator: Generator) -> None:
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
            body = Source()
            body.line("k, v = kv")
            body.line(f"return ({', '.join([*self.key.encode('k'), *self.value.encode('v')])},)")
            self._generator.define(self._pair_encoder, "kv", body, self.name)
        return self._pair_encoder

    def decode(self, source: Source, places: list[str]) -> str:
        if self._decoder is None:
            self._decoder = self._generator.name("decode_dict")
            if self.as_map:
                self._define_map_decoder(self._decoder)
            else:
                self._define_pairs_decoder(self._decoder)
        return f"{self._decoder}({places[0]})"

    def _define_map_decoder(self, name: str) -> None:
        body = Source()
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
        pair_body = Source()
        key = self.key.decode(pair_body, places[: self.key.width])
        value = self.value.decode(pair_body, places[self.key.width :])
        pair_body.line(f"return ({key}, {value})")
        generator.define(pair, ", ".join(places), pair_body, f"{self.name} item")
        body = Source()
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


class UnionShape(Shape):
    """Optional[T] with T not a scalar, and unions whose members cannot be told apart
    by their CBOR form alone (those travel as ``[member index, member form]``)."""

    def __init__(
        self, name: str, members: list[Shape], optional: bool, generator: Generator
    ) -> None:
        super().__init__(name)
        self.members = [member.single() for member in members]
        self.optional = optional
        self.tagged = len(self.members) > 1
        self.classes = tuple(cls for member in self.members for cls in member.classes)
        if optional:
            self.classes += (NoneType,)
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
        body = Source()
        if self.optional:
            body.line("if v is None: return None")
        body.line(f"i = {table}.get(type(v))")
        body.line(f"if i is None: i = _union_index(v, {classes})")
        for index, member in enumerate(self.members):
            (form,) = member.encode("v")
            body.line(f"if i == {index}: return [{index}, {form}]")
        generator.define(name, "v", body, self.name)

    def decode(self, source: Source, places: list[str]) -> str:
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
        body = Source()
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


class RecordShape(Shape):
    """An AutoMarshal (or attrs) class, or a fixed-size tuple: its fields' forms in
    order, spliced into the enclosing array unless ``boxed``."""

    def __init__(
        self, name: str, cls: type, generator: Generator, *, recursive: bool = False
    ) -> None:
        super().__init__(name)
        self.cls = cls
        self.classes = (cls,)
        self.recursive = recursive
        # A recursive class is referenced while its fields are still being built: it is
        # boxed whatever its fields turn out to be.
        self.boxed = recursive
        self.spliced = not recursive
        self.fields: list[tuple[str, Shape]] = []
        self._generator = generator
        self._encoder: str | None = None
        self._constructor: str | None = None
        self._boxed_decoder: str | None = None

    def finish(self, fields: list[tuple[str, Shape]]) -> None:
        self.fields = fields
        self.inner_width = sum(shape.width for _, shape in fields)
        self.boxed = self.recursive or self.inner_width == 0
        self.spliced = not self.boxed
        self.width = 1 if self.boxed else self.inner_width

    def single(self) -> Shape:
        return self if self.boxed else BoxedShape(self)

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
                body = Source()
                body.line(f"return [{', '.join(forms)}]")
                self._generator.define(self._encoder, "o", body, self.name)
        return self._encoder

    # decoding

    def decode(self, source: Source, places: list[str]) -> str:
        if self.boxed:
            return f"{self.boxed_decoder()}({places[0]})"
        return f"{self.constructor()}({', '.join(places)})"

    def boxed_decoder(self) -> str:
        if self._boxed_decoder is None:
            self._boxed_decoder = self._generator.name("decode_boxed")
            body = Source()
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
        body = Source()
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

    def _emit_build(self, body: Source, values: list[str]) -> None:
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


class BoxedShape(Shape):
    """A spliced record in a place that holds one value: an array of its inner forms."""

    def __init__(self, record: RecordShape) -> None:
        super().__init__(record.name)
        self.record = record
        self.classes = record.classes

    def encode(self, expr: str) -> list[str]:
        return [f"[{', '.join(self.record.inner_forms(expr))}]"]

    def decode(self, source: Source, places: list[str]) -> str:
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


# -- the kinds whose form is a single scalar ---------------------------------------------

SCALARS: dict[Any, tuple[type, ...]] = {
    NoneType: (NoneType,),
    bool: (bool,),
    int: (int, bool),
    float: (float, int, bool),
    str: (str,),
    bytes: (bytes,),
}


def converted_shape(tp: Any, name: str, generator: Generator) -> Shape | None:
    if not isinstance(tp, type):
        return None
    if issubclass(tp, enum.Enum):
        members = list(tp)
        by_value = all(type(m._value_) in (int, str) for m in members)
        listing = ",".join(f"{m._name_}={m._value_!r}" if by_value else m._name_ for m in members)
        schema = f"{name}(enum by {'value' if by_value else 'name'}: {listing})"
        if by_value:
            decoder = generator.constant(_enum_decoder(tp), "enum")
            return ConvertedShape(name, tp, "{}._value_", (), decoder + "({})", schema=schema)
        enum_cls = generator.constant(tp, "enum")
        return ConvertedShape(name, tp, "{}._name_", (str,), enum_cls + "[{}]", schema=schema)
    if tp is datetime:
        return ConvertedShape(
            name, tp, "_encode_datetime({})", (), "_decode_datetime({})", map_key=False
        )
    if tp is date:
        return ConvertedShape(name, tp, "{}.toordinal()", (int,), "_date_fromordinal({})")
    if tp is timedelta:
        return ConvertedShape(name, tp, "_encode_timedelta({})", (int,), "_timedelta(0, 0, {})")
    if tp is Decimal:
        return ConvertedShape(name, tp, "str({})", (str,), "_Decimal({})")
    if tp is UUID:
        return ConvertedShape(name, tp, "{}.bytes", (bytes,), "_UUID(bytes={})")
    return None


def _enum_decoder(enum_type: type[enum.Enum]) -> Callable[[Any], enum.Enum]:
    members = {member._value_: member for member in enum_type}

    def decode(value: Any) -> enum.Enum:
        member = members.get(value)
        # Flag combinations are members that no iteration lists.
        return member if member is not None else enum_type(value)

    return decode
