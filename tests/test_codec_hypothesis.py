"""Property tests of the codec over generated *types* and values of those types.

A strategy draws a type (scalars, containers, optionals, unions, fixed tuples and freshly
made AutoMarshal classes, nested), together with a strategy for its values. Every value
must survive arguments, result and exception round trips exactly (same types, same
values), and no corruption of the bytes may produce anything but RemoteCallError.
"""

from __future__ import annotations

import enum
import io
import itertools
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional, Union
from uuid import UUID

import attrs
import cbor2
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pyweaver._errors import RegistrationError, RemoteCallError
from pyweaver._runtime import _speedups
from pyweaver._runtime._automarshal import AutoMarshal
from pyweaver._runtime._codec import Codec, MethodCodec

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class Shape(enum.Enum):
    SQUARE = (4, "sides")
    TRIANGLE = (3, "sides")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Gen:
    """A generated type, a strategy for its values, and whether those are hashable."""

    tp: Any
    values: st.SearchStrategy[Any]
    hashable: bool


_timezones = st.none() | st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(
        lambda delta: timedelta(minutes=delta // timedelta(minutes=1))
    ),
)

LEAVES = [
    Gen(type(None), st.none(), True),
    Gen(bool, st.booleans(), True),
    Gen(int, st.integers() | st.integers(min_value=-(2**80), max_value=2**80), True),
    Gen(float, st.floats(allow_nan=False), True),
    Gen(str, st.text(max_size=8), True),
    Gen(bytes, st.binary(max_size=8), True),
    Gen(Color, st.sampled_from(Color), True),
    Gen(Shape, st.sampled_from(Shape), True),
    Gen(Level, st.sampled_from(Level), True),
    Gen(datetime, st.datetimes(timezones=_timezones), True),
    Gen(date, st.dates(), True),
    Gen(timedelta, st.timedeltas(), True),
    Gen(Decimal, st.decimals(allow_nan=False), True),
    Gen(UUID, st.uuids(), True),
]

# Parameterized at run time, which mypy cannot follow.
LIST: Any = list
TUPLE: Any = tuple
SET: Any = set
FROZENSET: Any = frozenset
DICT: Any = dict
OPTIONAL: Any = Optional
UNION: Any = Union

_class_names = itertools.count()


def _make_class(fields: list[Gen], style: str, base: tuple[type, ...] = (AutoMarshal,)) -> Gen:
    """A fresh AutoMarshal class with one field per generated type."""
    name = f"Generated{next(_class_names)}"
    annotations = {f"f{i}": field.tp for i, field in enumerate(fields)}
    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        "__module__": __name__,
        "__qualname__": name,
    }
    cls = type(name, base, namespace)
    hashable = False
    if style == "frozen":
        cls = attrs.frozen(cls)
        hashable = all(field.hashable for field in fields)
    elif style == "define":
        cls = attrs.define(cls)
    values = st.builds(cls, *(field.values for field in fields))
    return Gen(cls, values, hashable)


def _extend(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    hashable_children = children.filter(lambda g: g.hashable)

    def tuple_of(parts: list[Gen]) -> Gen:
        return Gen(
            TUPLE[tuple(p.tp for p in parts)] if parts else TUPLE[()],
            st.tuples(*(p.values for p in parts)),
            all(p.hashable for p in parts),
        )

    def union_of(parts: list[Gen]) -> Gen:
        return Gen(
            UNION[tuple(p.tp for p in parts)],
            st.one_of(*(p.values for p in parts)),
            all(p.hashable for p in parts),
        )

    return st.one_of(
        children.map(lambda g: Gen(LIST[g.tp], st.lists(g.values, max_size=4), False)),
        children.map(
            lambda g: Gen(TUPLE[g.tp, ...], st.lists(g.values, max_size=4).map(tuple), g.hashable)
        ),
        hashable_children.map(lambda g: Gen(SET[g.tp], st.sets(g.values, max_size=4), False)),
        hashable_children.map(
            lambda g: Gen(FROZENSET[g.tp], st.frozensets(g.values, max_size=4), True)
        ),
        st.tuples(hashable_children, children).map(
            lambda kv: Gen(
                DICT[kv[0].tp, kv[1].tp],
                st.dictionaries(kv[0].values, kv[1].values, max_size=3),
                False,
            )
        ),
        children.map(lambda g: Gen(OPTIONAL[g.tp], st.none() | g.values, g.hashable)),
        st.lists(children, min_size=2, max_size=3).map(union_of),
        st.lists(children, max_size=3).map(tuple_of),
        st.tuples(
            st.lists(children, max_size=4), st.sampled_from(["undecorated", "define", "frozen"])
        ).map(lambda args: _make_class(*args)),
    )


TYPES = st.recursive(st.sampled_from(LEAVES), _extend, max_leaves=6)


def assert_same(expected: Any, actual: Any) -> None:
    """Equal values of the very same types, all the way down."""
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected) or set(actual) == set(expected)
        for key, value in expected.items():
            assert_same(value, actual[key])
    elif attrs.has(type(expected)):
        for field in attrs.fields(type(expected)):
            assert_same(getattr(expected, field.name), getattr(actual, field.name))
    elif isinstance(expected, Decimal):
        assert str(actual) == str(expected)
    elif isinstance(expected, datetime):
        assert (actual, actual.utcoffset(), actual.fold) == (
            expected,
            expected.utcoffset(),
            expected.fold,
        )
    else:
        assert actual == expected


def _method_codec(codec: Codec, gen: Gen) -> MethodCodec:
    try:
        return codec.method_codec([gen.tp, int], gen.tp, "gen.Method.m", arg_names=["x", "n"])
    except RegistrationError as exc:
        # Random unions may put two members of one runtime class together.
        assume("ambiguous" not in str(exc))
        raise


@SETTINGS
@given(data=st.data(), gen=TYPES)
def test_generated_values_round_trip(data: st.DataObject, gen: Gen) -> None:
    mc = _method_codec(Codec(), gen)
    value = data.draw(gen.values, label="value")
    decoded, n = mc.decode_args(mc.encode_args((value, 7)))
    assert n == 7
    assert_same(value, decoded)
    assert_same(value, mc.decode_result(mc.encode_result(value)))


@SETTINGS
@given(data=st.data(), fields=st.lists(TYPES, max_size=3))
def test_generated_exceptions_round_trip(data: st.DataObject, fields: list[Gen]) -> None:
    gen = _make_class(fields, "define", (AutoMarshal, Exception))
    codec = Codec()
    try:
        codec.check_type(gen.tp, "gen.Error")
    except RegistrationError as exc:
        assume("ambiguous" not in str(exc))
        raise
    mc = codec.method_codec([], int, "gen.Method.m")
    value = data.draw(gen.values, label="exception")
    with pytest.raises(gen.tp) as info:
        mc.decode_result(mc.encode_exception(value))
    assert info.value.args == value.args
    for field in attrs.fields(gen.tp):
        assert_same(getattr(value, field.name), getattr(info.value, field.name))


def _check_decode(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except RemoteCallError:
        return None


@SETTINGS
@given(data=st.data(), gen=TYPES)
def test_corrupted_payloads_only_raise_remote_call_error(data: st.DataObject, gen: Gen) -> None:
    mc = _method_codec(Codec(), gen)
    value = data.draw(gen.values, label="value")
    for payload, decode in (
        (mc.encode_args((value, 1)), mc.decode_args),
        (mc.encode_result(value), mc.decode_result),
    ):
        edit = data.draw(st.sampled_from(["flip", "truncate", "insert", "replace"]), label="edit")
        position = data.draw(st.integers(0, max(0, len(payload) - 1)), label="position")
        if edit == "flip":
            corrupted = bytearray(payload)
            corrupted[position] ^= data.draw(st.integers(1, 255), label="bits")
        elif edit == "truncate":
            corrupted = bytearray(payload[:position])
        elif edit == "insert":
            extra = data.draw(st.binary(min_size=1, max_size=4), label="extra")
            corrupted = bytearray(payload[:position] + extra + payload[position:])
        else:
            corrupted = bytearray(data.draw(st.binary(max_size=64), label="bytes"))
        decoded = _check_decode(decode, bytes(corrupted))
        # Whatever got through conforms to the types: it encodes again.
        if decode is mc.decode_args and decoded is not None:
            mc.encode_args(decoded)


@SETTINGS
@given(
    gen=TYPES,
    payload=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=4)
        | st.binary(max_size=4),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
        max_leaves=10,
    ),
)
def test_wrong_shapes_only_raise_remote_call_error(gen: Gen, payload: Any) -> None:
    mc = _method_codec(Codec(), gen)
    for data in (cbor2.dumps(payload), cbor2.dumps([payload, 1]), cbor2.dumps([0, payload])):
        decoded = _check_decode(mc.decode_args, data)
        if decoded is not None:
            mc.encode_args(decoded)
        try:
            mc.decode_result(data)
        except RemoteCallError:
            pass
        except Exception as exc:  # an application exception decoded from the payload
            assert not isinstance(exc, cbor2.CBORError | TypeError | ValueError | KeyError)


# Messages of scalars only are written by the generated code itself, not by cbor2.dumps
# (see "CBOR items written directly" in pyweaver._runtime._codec._compile): the bytes
# must be exactly cbor2's, for every size class of every head, and a value of another
# type than declared must take the cbor2 path as before.
_SCALAR_VALUES: dict[Any, st.SearchStrategy[Any]] = {
    bytes: st.binary(max_size=300) | st.sampled_from([b"x" * 65_536, b"y" * 70_000]),
    str: st.text(max_size=300) | st.sampled_from(["é" * 40_000]),
    int: st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([23, 24, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**64 - 1, 2**64])
    | st.sampled_from([-24, -25, -256, -257, -(2**64), -(2**64) - 1]),
    float: st.floats(allow_nan=True, allow_infinity=True),
    bool: st.booleans(),
    type(None): st.none(),
}


@SETTINGS
@given(data=st.data(), types=st.lists(st.sampled_from(list(_SCALAR_VALUES)), max_size=4))
def test_scalar_messages_are_written_exactly_as_cbor2_writes_them(
    data: st.DataObject, types: list[Any]
) -> None:
    result_type = types[0] if types else bytes
    mc = Codec().method_codec(
        list(types), result_type, "gen.Scalars.m", arg_names=[f"p{i}" for i in range(len(types))]
    )
    values = tuple(data.draw(_SCALAR_VALUES[tp], label=f"arg {i}") for i, tp in enumerate(types))
    encoded = mc.encode_args(values)
    assert encoded == cbor2.dumps(list(values))
    assert [repr(v) for v in mc.decode_args(encoded)] == [repr(v) for v in values]
    result = data.draw(_SCALAR_VALUES[result_type], label="result")
    assert mc.encode_result(result) == cbor2.dumps([0, result])
    # Not the declared type (a bool for an int, an int for a float, a bytearray for
    # bytes): the general path, as before.
    other = data.draw(st.sampled_from([True, 3, bytearray(b"ab"), "s", None, 1.5]), label="other")
    if types and type(other) is not types[0]:
        assert mc.encode_args((other, *values[1:])) == cbor2.dumps([other, *values[1:]])


# A message of one bytes or one str value is read without cbor2 when its bytes are
# exactly that (see _bytes_after in pyweaver._runtime._codec._compile); anything else is
# decoded the general way. Whatever the direct reader returns must be what cbor2 reads.
def _items(major: int) -> st.SearchStrategy[bytes]:
    """CBOR byte or text strings with minimal and non-minimal heads."""

    def encode(payload: bytes, width: int) -> bytes:
        if width < 0 and len(payload) < 24:
            return bytes((major << 5 | len(payload),)) + payload
        width = max(width, 0)
        size = len(payload)
        if size >= 1 << (8 << width):
            width = 3
        return bytes((major << 5 | (24 + width),)) + size.to_bytes(1 << width, "big") + payload

    content = st.binary(max_size=300) if major == 2 else st.text(max_size=100).map(str.encode)
    return st.builds(encode, content, st.integers(min_value=-1, max_value=3))


@SETTINGS
@given(
    data=st.one_of(_items(2), _items(3), st.binary(max_size=40)),
    prefix=st.sampled_from([b"", b"\x81", b"\x82\x00"]),
    tail=st.sampled_from([b"", b"\x00"]),
)
@example(data=b"G" + bytes(6), prefix=b"", tail=b"\x00")  # the tail completes the item
def test_single_string_messages_read_directly_agree_with_cbor2(
    data: bytes, prefix: bytes, tail: bytes
) -> None:
    from pyweaver._runtime._codec._compile import STRING_PATHS, _bytes_after, _text_after

    message = prefix + data + tail
    readers: list[tuple[Any, type]] = [(_bytes_after, bytes), (_text_after, str)]
    readers += [(STRING_PATHS["_bytes_after"], bytes), (STRING_PATHS["_text_after"], str)]
    for reader, kind in readers:  # the Python readers, and the C ones when built
        assert reader(bytearray(message), prefix) is None  # not bytes: the general way
        if prefix:
            assert reader(b"\x83" + message[1:], prefix) is None  # another prefix
        value = reader(message, prefix)
        if value is not None:
            assert type(value) is kind
            rest = io.BytesIO(message[len(prefix) :])
            assert cbor2.CBORDecoder(rest).decode() == value
            assert rest.tell() == len(message) - len(prefix)  # the item ends at the end


@SETTINGS
@given(
    value=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([bytes(n) for n in (23, 24, 255, 256, 65_535, 65_536, 70_000)]),
    ),
    text=st.text(max_size=300),
    prefix=st.sampled_from([b"", b"\x81", b"\x82\x00"]),
)
def test_single_string_messages_written_directly_are_what_cbor2_writes(
    value: bytes, text: str, prefix: bytes
) -> None:
    from pyweaver._runtime._codec._compile import STRING_PATHS, _bytes_message, _text_message

    for write_bytes, write_text in (
        (_bytes_message, _text_message),
        (STRING_PATHS["_bytes_message"], STRING_PATHS["_text_message"]),
    ):
        assert write_bytes(prefix, value) == prefix + cbor2.dumps(value)
        assert write_text(prefix, text) == prefix + cbor2.dumps(text)


def test_the_c_string_paths_refuse_wrong_calls_and_unencodable_text() -> None:
    from pyweaver._runtime._codec._compile import STRING_PATHS

    if _speedups.LocalMethod is None:
        pytest.skip("the C module is not built (see test_local_stubs.py)")
    for name in STRING_PATHS:
        assert type(STRING_PATHS[name]).__name__ == "builtin_function_or_method"
        with pytest.raises(TypeError):
            STRING_PATHS[name]("not", "bytes")
        with pytest.raises(TypeError):
            STRING_PATHS[name](b"")
    with pytest.raises(UnicodeEncodeError):
        STRING_PATHS["_text_message"](b"", "\ud800")  # a lone surrogate, as str.encode()
    assert STRING_PATHS["_text_after"](b"\x62\xff\xfe", b"") is None  # not UTF-8


@SETTINGS
@given(value=st.binary(max_size=2000), text=st.text(max_size=200))
def test_single_string_messages_decode_both_ways_alike(value: bytes, text: str) -> None:
    for tp, item in ((bytes, value), (str, text)):
        mc = Codec().method_codec([tp], tp, "gen.Strings.m", arg_names=["p"])
        args = cbor2.dumps([item])
        assert mc.decode_args(args) == (item,)
        assert mc.decode_args(bytearray(args)) == (item,)  # type: ignore[arg-type]  # general way
        assert mc.decode_result(cbor2.dumps([0, item])) == item
        with pytest.raises(RemoteCallError):
            mc.decode_args(args[:-1])  # truncated
