"""The generated entry points of one method: its arguments and its result to bytes and back.

For each method the codec writes four functions (compiled by :mod:`._compile`), each a
flat sequence of its types' shape code (:mod:`._shapes`) inside one ``try``, so a call
does no type dispatch: encoding is attribute reads plus one ``cbor2.dumps`` (a message
whose values are all scalars of their declared types is written head by head instead,
byte for byte the same, see :func:`_write_directly`); decoding (a message of one
``bytes`` or ``str`` value, exactly that, is read without cbor2: :func:`_read_directly`)
is one strict CBOR decode (``call.strict_payload_loads``: no semantic tags but bignums)
plus inline type checks and object construction. Any failure becomes a
:class:`~pyweaver.RemoteCallError` naming the method and, where it can, the parameter
and field (:mod:`._errors`).

Messages
--------
* arguments: an array of the arguments' forms, spliced: ``[a0..., a1..., ...]``;
* a successful result: ``[0, value...]`` (spliced);
* an exception the method raised: tag 1 or 2, see :mod:`._exceptions`; the result
  decoder hands any array whose tag is not 0 to the exception codec.

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
"""

from __future__ import annotations

from collections.abc import Callable
from types import NoneType
from typing import Any

from pyweaver._runtime._codec._compile import Generator, Source, array_head
from pyweaver._runtime._codec._shapes import ScalarShape, Shape

__all__ = [
    "OK",
    "define_decode_args",
    "define_decode_result",
    "define_encode_args",
    "define_encode_result",
]

#: The tag of a successful result (the first item of a result array).
OK = 0


def _direct(shape: Shape, var: str) -> tuple[str, list[str], list[str]] | None:
    """How the generated code writes a value of a scalar ``shape`` held in ``var``
    itself (see "CBOR items written directly" in :mod:`._compile`): the guard that it
    has exactly the declared type, statements to run first, and the expressions of
    its bytes. None when the shape is not such a scalar."""
    if not isinstance(shape, ScalarShape):
        return None
    accepted = shape.accepted
    if accepted == (bytes,):
        return f"type({var}) is bytes", [], [f"_bytes_head(len({var}))", var]
    if accepted == (str,):
        utf8 = f"{var}_utf8"
        encode = f"{utf8} = {var}.encode()"
        return f"type({var}) is str", [encode], [f"_text_head(len({utf8}))", utf8]
    if accepted == (int, bool):
        return f"type({var}) is int", [], [f"_int_item({var})"]
    if accepted == (float, int, bool):
        return f"type({var}) is float", [], [f"_float_item({var})"]
    if accepted == (bool,):
        return f"type({var}) is bool", [], [f"(b'\\xf5' if {var} else b'\\xf4')"]
    if accepted == (NoneType,):
        return f"{var} is None", [], ["b'\\xf6'"]
    return None


def _single_string(shapes: list[Shape]) -> str | None:
    """``"bytes"`` or ``"text"`` for a message holding one ``bytes`` or one ``str``
    value, the messages big payloads travel in, which the generated code reads and
    writes with ``_{kind}_after`` and ``_{kind}_message`` (see :mod:`._compile`); None
    for any other message."""
    if len(shapes) != 1 or not isinstance(shapes[0], ScalarShape):
        return None
    kinds: dict[tuple[type, ...], str] = {(bytes,): "bytes", (str,): "text"}
    return kinds.get(shapes[0].accepted)


def _read_directly(body: Source, head: bytes, shapes: list[Shape], result: str) -> None:
    """When the message is ``head`` and then exactly one value of a single ``bytes`` or
    ``str`` shape, return ``result`` (an expression of the value ``s0``) read without
    cbor2; any other bytes fall through to the general decoding that follows."""
    kind = _single_string(shapes)
    if kind is None:
        return
    body.line(f"s0 = _{kind}_after(data, {head!r})")
    body.line("if s0 is not None:")
    with body.indented():
        body.line(f"return {result}")


def _write_directly(body: Source, head: bytes, shapes: list[Shape], names: list[str]) -> None:
    """When every value is a scalar of its declared type, return the message written
    head by head (``head``: its array head, plus the result tag), one join in all;
    otherwise fall through to the ``cbor2.dumps`` line that follows."""
    plans = [_direct(shape, name) for shape, name in zip(shapes, names, strict=True)]
    if not plans or any(plan is None for plan in plans):
        return
    kind = _single_string(shapes)
    if kind is not None:  # one string, the messages big payloads travel in: one call
        body.line(f"if {plans[0][0]}:")  # type: ignore[index]
        with body.indented():
            body.line(f"return _{kind}_message({head!r}, {names[0]})")
        return
    guards = [plan[0] for plan in plans if plan is not None]
    body.line(f"if {' and '.join(guards)}:")
    with body.indented():
        parts = [repr(head)]
        for plan in plans:
            assert plan is not None
            for statement in plan[1]:
                body.line(statement)
            parts.extend(plan[2])
        body.line(f"return _join(({', '.join(parts)}, ))")


def define_encode_args(generator: Generator, shapes: list[Shape], where: str) -> Any:
    """``encode_args(args: tuple) -> bytes``: the arguments message."""
    names = [f"a{i}" for i in range(len(shapes))]
    forms = [form for var, shape in zip(names, shapes, strict=True) for form in shape.encode(var)]
    body = Source()
    body.line("try:")
    with body.indented():
        body.line(f"({''.join(n + ', ' for n in names)}) = args")
        _write_directly(body, array_head(len(forms)), shapes, names)
        body.line(f"return _dumps([{', '.join(forms)}])")
    body.line("except Exception as exc:")
    with body.indented():
        body.line(f"raise _encode_failure({where!r}, 'the arguments', exc) from exc")
    return generator.define(generator.name("encode_args"), "args", body, f"{where} arguments")


def define_decode_args(
    generator: Generator, shapes: list[Shape], labels: list[str], where: str
) -> Any:
    """``decode_args(data: bytes) -> tuple``: the arguments, checked against their types."""
    width = sum(shape.width for shape in shapes)
    places = [f"s{i}" for i in range(width)]
    body = Source()
    body.line("try:")
    with body.indented():
        _read_directly(body, array_head(width), shapes, "(s0, )")
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


def define_encode_result(generator: Generator, shape: Shape, where: str) -> Any:
    """``encode_result(value) -> bytes``: a successful result message."""
    body = Source()
    body.line("try:")
    with body.indented():
        forms = shape.encode("value")
        _write_directly(body, array_head(1 + len(forms)) + bytes((OK,)), [shape], ["value"])
        body.line(f"return _dumps([{OK}, {', '.join(forms)}])")
    body.line("except Exception as exc:")
    with body.indented():
        body.line(f"raise _encode_failure({where!r}, 'the result', exc) from exc")
    return generator.define(generator.name("encode_result"), "value", body, f"{where} result")


def define_decode_result(
    generator: Generator,
    shape: Shape,
    where: str,
    decode_exception: Callable[[Any, str], BaseException],
) -> Any:
    """``decode_result(data: bytes) -> value``; a message with an exception tag raises
    what ``decode_exception(message, where)`` returns."""
    places = [f"s{i}" for i in range(shape.width)]
    decode_exception_name = generator.constant(decode_exception, "decode_exception")
    body = Source()
    body.line("try:")
    with body.indented():
        _read_directly(body, array_head(1 + shape.width) + bytes((OK,)), [shape], "s0")
        body.line("v = _loads(data)")
        body.line("if type(v) is not list or not v: raise _mismatch('a result array', v)")
        body.line("tag = v[0]")
        body.line(f"if tag == {OK} and type(tag) is int:")
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
    body.line(f"raise {decode_exception_name}(v, {where!r})")
    return generator.define(generator.name("decode_result"), "data", body, f"{where} result")
