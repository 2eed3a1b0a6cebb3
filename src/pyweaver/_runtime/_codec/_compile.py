"""Compiling generated source: the functions the codec writes, and the namespace they run in.

The shapes (:mod:`._shapes`) and the per-method entry points (:mod:`._generate`) write
Python source, line by line, into a :class:`Source`; a :class:`Generator` (one per
:class:`~._codec.Codec`) compiles it into a function living in one shared namespace.
That namespace holds what generated code calls by name: ``_dumps``/``_loads`` (cbor2),
the errors of :mod:`._errors`, and the conversions below for types whose CBOR form is
computed. Values the code needs (classes, setters, lookup tables) are bound to fresh
global names with :meth:`Generator.constant`, so a generated function reads them as
globals: no closures, no attribute chains on the hot path.

Each function is compiled under its own file name (``<pyweaver codec N: what it is
for>``) whose source is put in :mod:`linecache`, so a traceback through generated code
shows the generated lines.
"""

from __future__ import annotations

import itertools
import linecache
import math
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import cbor2

from pyweaver._runtime import _speedups
from pyweaver._runtime._codec._errors import _Mismatch, decode_failure, encode_failure, mismatch
from pyweaver.call import strict_payload_loads

__all__ = ["Generator", "Source", "array_head"]


# -- conversions the generated code calls -----------------------------------------------


def _encode_datetime(value: datetime) -> Any:
    text = value.isoformat()
    return [text, 1] if value.fold else text


def _decode_datetime(raw: Any) -> datetime:
    if type(raw) is str:
        return datetime.fromisoformat(raw)
    if type(raw) is list and len(raw) == 2 and type(raw[0]) is str and raw[1] == 1:
        return datetime.fromisoformat(raw[0]).replace(fold=1)
    raise mismatch("a datetime", raw)


def _encode_timedelta(value: timedelta) -> int:
    return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds


def _union_index(value: Any, member_classes: Sequence[tuple[type, ...]]) -> int:
    for index, classes in enumerate(member_classes):
        if isinstance(value, classes):
            return index
    raise TypeError(f"{type(value).__name__} is none of the union's types")


# -- CBOR items written directly ---------------------------------------------------------
#
# A message whose values are all scalars (bytes, str, int, bool, None, float) is written
# by the generated code itself, head by head, and joined once: byte for byte what
# ``cbor2.dumps`` writes for the same list (the codec tests check this with hypothesis),
# in a third of the time for small messages (``dumps`` sets up an encoder and a buffer
# per call) and with one copy of a large byte string instead of three.

_BYTES_HEADS = tuple(bytes((0x40 | n,)) for n in range(24))
_TEXT_HEADS = tuple(bytes((0x60 | n,)) for n in range(24))
_SMALL_INTS = tuple(bytes((n,)) for n in range(24))
_SMALL_NEGATIVE_INTS = tuple(bytes((0x20 | n,)) for n in range(24))
_ARRAY_HEADS = tuple(bytes((0x80 | n,)) for n in range(24))
_pack_float = struct.Struct(">Bd").pack
_UINT64_END = 1 << 64


def _long_head(base: int, n: int) -> bytes:
    """The head of a CBOR item of major type ``base`` (shifted) and argument ``n`` >= 24."""
    if n < 0x100:
        return bytes((base | 24, n))
    if n < 0x10000:
        return bytes((base | 25, n >> 8, n & 0xFF))
    if n < 0x1_0000_0000:
        return bytes((base | 26,)) + n.to_bytes(4, "big")
    return bytes((base | 27,)) + n.to_bytes(8, "big")


def _bytes_head(n: int) -> bytes:
    return _BYTES_HEADS[n] if n < 24 else _long_head(0x40, n)


def _text_head(n: int) -> bytes:
    return _TEXT_HEADS[n] if n < 24 else _long_head(0x60, n)


def array_head(n: int) -> bytes:
    return _ARRAY_HEADS[n] if n < 24 else _long_head(0x80, n)


def _int_item(value: int) -> bytes:
    if value >= 0:
        if value < 24:
            return _SMALL_INTS[value]
        if value < _UINT64_END:
            return _long_head(0x00, value)
    else:
        n = -1 - value
        if n < 24:
            return _SMALL_NEGATIVE_INTS[n]
        if n < _UINT64_END:
            return _long_head(0x20, n)
    return cbor2.dumps(value)  # a bignum (tag 2 or 3)


def _float_item(value: float) -> bytes:
    if math.isfinite(value):
        return _pack_float(0xFB, value)
    if math.isnan(value):
        return b"\xf9\x7e\x00"  # cbor2 writes every NaN as this half-precision one
    return b"\xf9\x7c\x00" if value > 0 else b"\xf9\xfc\x00"


def _string_start(data: bytes, pos: int, major: int) -> int | None:
    """Where the content of the CBOR string of ``major`` type (2: bytes, 3: text) at
    ``pos`` starts, when that string is exactly ``data[pos:]`` and of definite length;
    None for anything else."""
    end = len(data)
    if pos >= end:
        return None
    argument = data[pos] - (major << 5)
    if 0 <= argument < 24:
        start = pos + 1
        size = argument
    elif 24 <= argument <= 27:
        start = pos + 1 + (1 << (argument - 24))
        if start > end:
            return None
        size = int.from_bytes(data[pos + 1 : start], "big")
    else:
        return None
    return start if start + size == end else None


def _bytes_after(data: bytes, prefix: bytes) -> bytes | None:
    """The byte string that is exactly what follows ``prefix`` in ``data``, when
    ``data`` is ``bytes`` starting with ``prefix`` and the rest is one definite-length
    CBOR byte string (what ``cbor2.loads`` returns for it); None for anything else (the
    caller then decodes the general way, which explains what is wrong). One call for
    the generated decoders: a short string's head is read here, any other's by
    :func:`_string_start`."""
    if type(data) is not bytes or not data.startswith(prefix):
        return None
    pos = len(prefix)
    if pos < len(data):
        size = data[pos] - 0x40
        if 0 <= size < 24:
            return data[pos + 1 :] if pos + 1 + size == len(data) else None
    start = _string_start(data, pos, 2)
    return None if start is None else data[start:]


def _text_after(data: bytes, prefix: bytes) -> str | None:
    """The text that is exactly what follows ``prefix`` in ``data`` (see
    :func:`_bytes_after`), or None."""
    if type(data) is not bytes or not data.startswith(prefix):
        return None
    start = _string_start(data, len(prefix), 3)
    if start is None:
        return None
    try:
        return data[start:].decode()
    except UnicodeDecodeError:
        return None


def _bytes_message(prefix: bytes, value: bytes) -> bytes:
    """``prefix`` followed by ``value`` as one CBOR byte string."""
    return b"".join((prefix, _bytes_head(len(value)), value))


def _text_message(prefix: bytes, value: str) -> bytes:
    """``prefix`` followed by ``value`` as one CBOR text string."""
    utf8 = value.encode()
    return b"".join((prefix, _text_head(len(utf8)), utf8))


#: The direct paths of one-string messages the generated code calls: the C module's
#: (``_localcall.c``, same bytes in and out, a few hundred ns less per call) when it
#: is built, else the functions above.
STRING_PATHS: dict[str, Any] = {
    "_bytes_after": _speedups.codec("bytes_after") or _bytes_after,
    "_text_after": _speedups.codec("text_after") or _text_after,
    "_bytes_message": _speedups.codec("bytes_message") or _bytes_message,
    "_text_message": _speedups.codec("text_message") or _text_message,
}


# -- generated functions ----------------------------------------------------------------


class Source:
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


class Generator:
    """The namespace generated functions live in, and the means to add to it."""

    _file_counter: ClassVar[Iterator[int]] = itertools.count()

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "__builtins__": __builtins__,
            "_dumps": cbor2.dumps,
            "_loads": strict_payload_loads,
            "_chain": itertools.chain.from_iterable,
            "_Mismatch": _Mismatch,
            "_mismatch": mismatch,
            "_encode_failure": encode_failure,
            "_decode_failure": decode_failure,
            "_encode_datetime": _encode_datetime,
            "_decode_datetime": _decode_datetime,
            "_encode_timedelta": _encode_timedelta,
            "_timedelta": timedelta,
            "_date_fromordinal": date.fromordinal,
            "_Decimal": Decimal,
            "_UUID": UUID,
            "_union_index": _union_index,
            "_join": b"".join,
            "_bytes_head": _bytes_head,
            "_text_head": _text_head,
            "_int_item": _int_item,
            "_float_item": _float_item,
            **STRING_PATHS,
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

    def define(self, name: str, params: str, source: Source, comment: str) -> Any:
        comment = " ".join(comment.split())  # one line, whatever a type's repr holds
        text = "\n".join([f"def {name}({params}):", f"    # {comment}", *source.lines])
        filename = f"<pyweaver codec {next(self._file_counter)}: {comment}>"
        code = compile(text + "\n", filename, "exec")
        exec(code, self.namespace)
        # So tracebacks through generated code show its source.
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        return self.namespace[name]
