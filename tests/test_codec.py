"""The codec: wire format, every supported type, exceptions, type rejection messages and
decode failures. (Generated types and values: test_codec_hypothesis.py.)"""

# typing.Optional/Union spellings are under test alongside X | Y.
# ruff: noqa: UP007, UP045

from __future__ import annotations

import enum
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, NewType, Optional, TypeVar, Union

import attrs
import cbor2
import pytest

from pyweaver._errors import RegistrationError, RemoteCallError, RemoteException
from pyweaver._runtime._automarshal import AutoMarshal
from pyweaver._runtime._codec import Codec, MethodCodec

T = TypeVar("T")
UserId = NewType("UserId", int)


class Point(AutoMarshal):
    x: int
    y: int


@attrs.frozen
class Item(AutoMarshal):
    x: int
    y: float
    label: str


@attrs.frozen
class Line(AutoMarshal):
    start: Point
    end: Point
    label: str = ""


class Empty(AutoMarshal):
    pass


class Tree(AutoMarshal):
    value: int
    children: list[Tree]
    parent_label: str | None = None


class Ping(AutoMarshal):
    pong: Pong | None


class Pong(AutoMarshal):
    ping: Ping | None


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class Shape(enum.Enum):
    SQUARE = (4, "sides")
    TRIANGLE = (3, "sides")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@attrs.define
class QuotaExceeded(AutoMarshal, Exception):
    limit: int
    who: Point


class NoFields(AutoMarshal, Exception):
    pass


@attrs.frozen
class Plain:
    x: int


class Box(AutoMarshal, Generic[T]):
    value: T


class WithLock(AutoMarshal):
    name: str
    lock: threading.Lock


class Unannotated:
    pass


@attrs.define
class NoType(AutoMarshal):
    x = attrs.field()  # type: ignore[var-annotated]


def codec_for(*arg_types: Any, result: Any = None, where: str = "app.C.m") -> MethodCodec:
    return Codec().method_codec(list(arg_types), result, where)


def round_trip(tp: Any, value: Any) -> Any:
    mc = codec_for(tp, result=tp)
    (decoded,) = mc.decode_args(mc.encode_args((value,)))
    assert mc.decode_result(mc.encode_result(value)) == decoded
    assert mc.copy_args((value,)) == (decoded,)
    assert mc.copy_result(value) == decoded
    return decoded


# -- the wire format ----------------------------------------------------------------


def test_worked_example_from_the_module_docstring() -> None:
    mc = Codec().method_codec([Point, list[Point]], None, "app.M.move")
    data = mc.encode_args((Point(1, 2), [Point(3, 4)]))
    assert data.hex() == "830102820304"
    assert mc.decode_args(data) == (Point(1, 2), [Point(3, 4)])
    assert mc.encode_result(None).hex() == "8200f6"


def test_records_are_spliced_and_boxed_where_one_place_is_needed() -> None:
    mc = codec_for(Line, dict[str, Point], Optional[Point], tuple[int, str], Empty)
    args = (Line(Point(1, 2), Point(3, 4), "l"), {"a": Point(5, 6)}, Point(7, 8), (9, "t"), Empty())
    data = mc.encode_args(args)
    assert cbor2.loads(data) == [1, 2, 3, 4, "l", {"a": [5, 6]}, [7, 8], 9, "t", []]
    assert mc.decode_args(data) == args


def test_results_and_unions_on_the_wire() -> None:
    mc = codec_for(Union[int, str, None], Union[Point, list[int]], result=Point)
    assert cbor2.loads(mc.encode_args((None, Point(1, 2)))) == [None, [0, [1, 2]]]
    assert cbor2.loads(mc.encode_args(("s", [3]))) == ["s", [1, [3]]]
    assert cbor2.loads(mc.encode_result(Point(5, 6))) == [0, 5, 6]


def test_dicts_with_non_scalar_keys_travel_as_flat_pairs() -> None:
    @attrs.frozen
    class Key(AutoMarshal):
        a: int
        b: str

    mc = codec_for(dict[Key, int])
    value = {Key(1, "x"): 10, Key(2, "y"): 20}
    assert cbor2.loads(mc.encode_args((value,))) == [[1, "x", 10, 2, "y", 20]]
    assert mc.decode_args(mc.encode_args((value,))) == (value,)


def test_zero_arguments_and_none() -> None:
    mc = codec_for()
    assert mc.encode_args(()) == b"\x80"
    assert mc.decode_args(b"\x80") == ()
    assert mc.decode_result(mc.encode_result(None)) is None


# -- every supported type -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "value"),
    [
        (None, None),
        (bool, True),
        (int, -(2**100)),
        (int, 7),
        (float, 1.5),
        (float, float("inf")),
        (str, "héllo \u2603"),
        (bytes, b"\x00\xff"),
        (list[int], [1, 2, 3]),
        (list[list[str]], [["a"], [], ["b", "c"]]),
        (tuple[int, ...], (1, 2)),
        (tuple[int, str, bytes], (1, "a", b"b")),
        (tuple[()], ()),
        (set[str], {"a", "b"}),
        (frozenset[int], frozenset({1, 2})),
        (dict[str, int], {"a": 1}),
        (dict[int, list[float]], {1: [1.0], 2: []}),
        (dict[tuple[int, int], str], {(1, 2): "a"}),
        (dict[frozenset[int], str], {frozenset({1}): "a"}),
        (Optional[int], None),
        (Optional[int], 3),
        (int | str, "x"),
        (int | float, 2),
        (Optional[list[int]], [1]),
        (Optional[Point], Point(1, 2)),
        (Union[Point, Item, None], Item(1, 2.0, "i")),
        (Union[Point, list[int]], [1]),
        (Union[date, datetime], datetime(2020, 1, 1, 12)),
        (Union[date, datetime], date(2020, 1, 1)),
        (Color, Color.GREEN),
        (Color, Color.RED),
        (Shape, Shape.TRIANGLE),
        (Level, Level.HIGH),
        (Perm, Perm.READ | Perm.WRITE),
        (dict[Color, int], {Color.RED: 1}),
        (datetime, datetime(2024, 2, 29, 23, 59, 59, 999999)),
        (datetime, datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))),
        (datetime, datetime(2024, 11, 3, 1, 30, fold=1)),
        (date, date(1, 1, 1)),
        (timedelta, timedelta(days=-1, microseconds=1)),
        (Decimal, Decimal("-1.2300E+5")),
        (uuid.UUID, uuid.UUID(int=12345)),
        (Point, Point(-1, 2**70)),
        (Line, Line(Point(1, 2), Point(3, 4))),
        (list[Item], [Item(i, i / 2, str(i)) for i in range(5)]),
        (set[Item], {Item(1, 1.0, "a"), Item(2, 2.0, "b")}),
        (Empty, Empty()),
        (list[Empty], [Empty(), Empty()]),
        (Tree, Tree(1, [Tree(2, []), Tree(3, [Tree(4, [], "three")])])),
        (Ping, Ping(Pong(Ping(None)))),
        (Annotated[int, "meta"], 5),
        (UserId, UserId(5)),
        (Sequence[int], [1]),
        (Mapping[str, int], {"a": 1}),
    ],
    ids=repr,
)
def test_round_trip(tp: Any, value: Any) -> None:
    decoded = round_trip(tp, value)
    assert decoded == value
    assert type(decoded) is type(value)


def test_round_trip_keeps_exact_values() -> None:
    assert str(round_trip(Decimal, Decimal("1.10"))) == "1.10"
    mc = codec_for(float, Decimal)
    nan, decimal_nan = mc.decode_args(mc.encode_args((float("nan"), Decimal("NaN"))))
    assert nan != nan
    assert decimal_nan.is_nan()
    moment = round_trip(datetime, datetime(2024, 11, 3, 1, 30, fold=1))
    assert moment.fold == 1
    aware = round_trip(datetime, datetime(2024, 1, 1, tzinfo=UTC))
    assert aware.utcoffset() == timedelta(0)
    assert round_trip(datetime, datetime(2024, 1, 1)).tzinfo is None


def test_decoded_objects_are_rebuilt_without_calling_init() -> None:
    calls: list[int] = []

    @attrs.define
    class Counted(AutoMarshal):
        x: int = attrs.field()

        @x.validator
        def _check(self, attribute: Any, value: int) -> None:
            calls.append(value)

    value = Counted(1)
    assert calls == [1]
    assert round_trip(Counted, value) == value
    assert calls == [1]


def test_copies_are_independent() -> None:
    original = [Point(1, 2)]
    (copy,) = codec_for(list[Point]).copy_args((original,))
    assert copy == original
    copy[0].x = 99
    assert original[0].x == 1


def test_plain_attrs_classes_need_opting_in() -> None:
    with pytest.raises(RegistrationError, match=r"derive it from weaver\.AutoMarshal"):
        Codec().check_type(Plain, "app.C.m parameter 'p'")
    mc = Codec(plain_attrs=True).method_codec([Plain], Plain, "internal")
    assert mc.decode_args(mc.encode_args((Plain(3),))) == (Plain(3),)


def test_schema_names_types_and_fields() -> None:
    schema = codec_for(Line, list[Color], result=Tree).schema
    assert f"{__name__}.Line{{start: {__name__}.Point{{x: int, y: int}}" in schema
    assert "enum by value: RED=1,GREEN='green'" in schema
    assert schema.endswith(f"children: list[{__name__}.Tree], parent_label: str | None}}")


# -- exceptions ---------------------------------------------------------------------


def test_automarshal_exceptions_cross_as_themselves() -> None:
    mc = codec_for(result=int)
    with pytest.raises(QuotaExceeded) as info:
        mc.decode_result(mc.encode_exception(QuotaExceeded(10, Point(1, 2))))
    exc = info.value
    assert (exc.limit, exc.who, exc.args) == (10, Point(1, 2), (10, Point(1, 2)))
    assert any("remote traceback" in note for note in exc.__notes__)
    with pytest.raises(NoFields):
        mc.decode_result(mc.encode_exception(NoFields()))


def test_other_exceptions_become_remote_exceptions() -> None:
    mc = codec_for(result=int)
    try:
        empty: dict[str, int] = {}
        empty["missing"]
    except KeyError as exc:
        data = mc.encode_exception(exc)
    with pytest.raises(RemoteException) as info:
        mc.decode_result(data)
    remote = info.value
    assert remote.type_name == "builtins.KeyError"
    assert remote.message == "'missing'"
    assert "KeyError" in remote.remote_traceback
    assert "test_other_exceptions_become_remote_exceptions" in remote.remote_traceback


def test_remote_exceptions_pass_through_unchanged() -> None:
    mc = codec_for(result=int)
    original = RemoteException("other.Error", "boom", "traceback text")
    with pytest.raises(RemoteException) as info:
        mc.decode_result(mc.encode_exception(original))
    assert info.value == original
    assert info.value.remote_traceback == "traceback text"


def test_automarshal_exception_with_bad_field_values_degrades() -> None:
    mc = codec_for(result=int)
    bad = QuotaExceeded("not an int", Point(1, 2))  # type: ignore[arg-type]
    with pytest.raises(RemoteException) as info:
        mc.decode_result(mc.encode_exception(bad))
    assert info.value.type_name == f"{__name__}.QuotaExceeded"


def test_unknown_exception_class_on_the_caller_side_degrades() -> None:
    mc = codec_for(result=int)
    data = cbor2.dumps([1, "not.imported.Error", "msg", "tb", [1, 2]])
    with pytest.raises(RemoteException) as info:
        mc.decode_result(data)
    assert (info.value.type_name, info.value.message) == ("not.imported.Error", "msg")


def test_unprintable_exceptions_still_encode() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    mc = codec_for(result=int)
    with pytest.raises(RemoteException, match="unprintable"):
        mc.decode_result(mc.encode_exception(Weird()))


# -- rejected types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "message"),
    [
        (Callable[[int], int], "Callable is not serializable (callables cannot"),
        (
            list[dict[str, Callable[[], None]]],
            "list[dict[str, Callable]] -> Callable is not serializable",
        ),
        (Any, "Any is not serializable"),
        (object, "object is not serializable"),
        (T, "T is not serializable (type variables"),
        (list, "list needs an element type"),
        (dict, "dict needs key and value types"),
        (tuple, "tuple needs element types"),
        (Unannotated, "make it a weaver.AutoMarshal subclass"),
        (type(threading.Lock()), "_thread.lock is not serializable (only None, bool"),
        (threading.Lock, "allocate_lock is not serializable (it is not a type"),
        (
            list[WithLock],
            f"list[{__name__}.WithLock] -> {__name__}.WithLock.lock -> _thread.allocate_lock",
        ),
        (NoType, f"{__name__}.NoType.x is not serializable (the field has no type annotation)"),
        (Box[int], "generic AutoMarshal classes are not supported"),
        (Box, "generic AutoMarshal classes are not supported"),
        (Union[list[int], list[str]], "both list at runtime"),
        (Union[Point, Point | tuple[int, ...], tuple[int, int]], "both tuple at runtime"),
        (complex, "is not serializable"),
        (Literal["a", "b"], "Literal is not supported; use an enum"),
        (type, "classes cannot cross a process boundary"),
    ],
    ids=repr,
)
def test_unsupported_types_are_rejected_naming_where_and_what(tp: Any, message: str) -> None:
    with pytest.raises(RegistrationError) as info:
        Codec().check_type(tp, "app.Reverser.reverse parameter 's'")
    text = str(info.value)
    assert text.startswith("app.Reverser.reverse parameter 's': ")
    assert message in text


def test_method_codec_names_the_parameter_at_fault() -> None:
    with pytest.raises(RegistrationError, match=r"app\.C\.m parameter 'cb': Callable"):
        Codec().method_codec([int, Callable[[], None]], None, "app.C.m", arg_names=["n", "cb"])
    with pytest.raises(RegistrationError, match=r"app\.C\.m result: Any"):
        Codec().method_codec([], Any, "app.C.m")


def test_unresolvable_field_annotation() -> None:
    class Dangling(AutoMarshal):
        x: NowhereToBeFound  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(RegistrationError, match="cannot resolve its annotations"):
        Codec().check_type(Dangling, "app.C.m parameter 'd'")


# -- failures at run time -----------------------------------------------------------


def test_decode_failures_name_the_method_parameter_and_field() -> None:
    mc = Codec().method_codec([Point, list[Point]], None, "app.M.move", arg_names=["p", "steps"])
    cases = {
        cbor2.dumps([1, "a", [3, 4]]): "parameter 'p' -> tests.test_codec.Point.y: expected int",
        cbor2.dumps([1, 2, [3, 4, 5]]): "parameter 'steps': expected a multiple of 2",
        cbor2.dumps([1, 2, [3, "z"]]): "parameter 'steps' -> tests.test_codec.Point.y: expected",
        cbor2.dumps([1, 2]): "expected an array of 3 items",
        cbor2.dumps({"a": 1}): "expected an array of 3 items, got dict",
        b"": "CBORDecodeEOF",
        b"\xff": "CBORDecodeError",
        b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff": "CBORDecode",
    }
    for data, message in cases.items():
        with pytest.raises(RemoteCallError) as info:
            mc.decode_args(data)
        assert str(info.value).startswith("app.M.move: cannot decode the arguments: ")
        assert message.replace("tests.test_codec", __name__) in str(info.value)


def test_decode_result_failures() -> None:
    mc = codec_for(result=Point)
    for data in (
        cbor2.dumps([]),
        cbor2.dumps([0, 1]),
        cbor2.dumps([0, 1, "y"]),
        cbor2.dumps([7, "x"]),
        cbor2.dumps([2, "name", 3, "tb"]),
        cbor2.dumps([1, "name"]),
        cbor2.dumps("text"),
        b"\x82",
    ):
        with pytest.raises(RemoteCallError, match=r"app\.C\.m: cannot decode the result"):
            mc.decode_result(data)


def test_converted_values_that_do_not_convert_are_decode_failures() -> None:
    mc = codec_for(date, Decimal, uuid.UUID, Color, datetime, Shape)
    good = [1, "1", b"0" * 16, 1, "2020-01-01", "SQUARE"]
    for index, bad in enumerate([10**9, "x", b"short", 3, "not a date", "CIRCLE"]):
        payload = list(good)
        payload[index] = bad
        with pytest.raises(RemoteCallError, match=f"argument {index}|cannot decode"):
            mc.decode_args(cbor2.dumps(payload))


def test_encode_failures_raise_remote_call_error() -> None:
    mc = codec_for(Point, str)
    with pytest.raises(RemoteCallError, match=r"app\.C\.m: cannot encode the arguments"):
        mc.encode_args((object(), "s"))
    with pytest.raises(RemoteCallError, match="cannot encode the arguments"):
        mc.encode_args((Point(1, 2), object()))
    with pytest.raises(RemoteCallError, match="cannot encode the arguments"):
        mc.encode_args((Point(1, 2),))
    with pytest.raises(RemoteCallError, match="cannot encode the result"):
        codec_for(result=Point).encode_result("not a point")


def test_unicode_surrogates_cannot_travel() -> None:
    with pytest.raises(RemoteCallError):
        codec_for(str).encode_args(("\ud800",))
