"""The exception codec: an exception a method raised, to a result message and back.

A method's exception travels in its result message, under a tag other than the success
tag 0 (:mod:`._generate`):

* ``[1, type_name, message, traceback, [fields...]]``: an AutoMarshal exception (an
  attrs exception class whose fields can all cross the wire). The caller's side looks the
  class up by its full name (:func:`~pyweaver._runtime._automarshal.lookup`), rebuilds it
  from its boxed fields and raises it as itself, with the remote traceback as a note;
* ``[2, type_name, message, traceback]``: any other exception, or an AutoMarshal one the
  receiver cannot rebuild (unknown class, a field holding a value its type does not
  allow). Raised on the caller's side as :class:`~pyweaver.RemoteException`; a
  RemoteException passing through a further hop travels on unchanged.

Encoding never raises: what cannot travel as itself degrades to tag 2. Text is made
valid CBOR text (lone surrogates escaped) first.
"""

from __future__ import annotations

import traceback
from typing import Any

import attrs
import cbor2

from pyweaver._errors import RemoteException
from pyweaver._runtime._automarshal import AutoMarshal, full_name, lookup
from pyweaver._runtime._codec._compile import Generator
from pyweaver._runtime._codec._errors import _Unsupported, decode_failure, mismatch
from pyweaver._runtime._codec._shapes import RecordShape
from pyweaver._runtime._codec._types import Shapes, type_name

__all__ = ["ExceptionCodec"]

# Result tags (the first item of a result array) of the two exception messages.
AUTOMARSHAL_EXCEPTION = 1
OTHER_EXCEPTION = 2


class ExceptionCodec:
    """Encodes and decodes the exception messages; one per :class:`~._codec.Codec`.

    The (encoder, decoder) pair of each exception class is generated on first use, with
    the same record shape its fields would have anywhere else.
    """

    def __init__(self, shapes: Shapes, generator: Generator) -> None:
        self._shapes = shapes
        self._generator = generator
        self._codecs: dict[type, tuple[str, str] | None] = {}

    def encode(self, exc: BaseException) -> bytes:
        """The result message for an exception raised by a method. Never raises: an
        exception that cannot travel as itself travels as a RemoteException."""
        if isinstance(exc, RemoteException):
            # Raised by a call further down the line: pass it on unchanged.
            return cbor2.dumps(
                [
                    OTHER_EXCEPTION,
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
        codec = self._codec_for(cls)
        if codec is not None:
            encoder = self._generator.namespace[codec[0]]
            try:
                return cbor2.dumps(
                    [AUTOMARSHAL_EXCEPTION, name, message, remote_traceback, encoder(exc)]
                )
            except Exception:
                pass  # a field holds a value its type does not allow: degrade
        return cbor2.dumps([OTHER_EXCEPTION, name, message, remote_traceback])

    def _codec_for(self, cls: type) -> tuple[str, str] | None:
        """(encoder, decoder) names for an exception class that travels as itself."""
        if cls in self._codecs:
            return self._codecs[cls]
        codec: tuple[str, str] | None = None
        if issubclass(cls, AutoMarshal) or (self._shapes.plain_attrs and attrs.has(cls)):
            try:
                shape = self._shapes.shape(cls, (type_name(cls),))
            except _Unsupported:
                shape = None
            if isinstance(shape, RecordShape):
                codec = (shape.encoder(), shape.boxed_decoder())
        self._codecs[cls] = codec
        return codec

    def decode(self, message: Any, where: str) -> BaseException:
        """The exception a non-success result message carries."""
        try:
            tag = message[0]
            if tag == OTHER_EXCEPTION and len(message) == 4:
                _, name, text, remote_traceback = message
                _check_texts(name, text, remote_traceback)
                return RemoteException(name, text, remote_traceback)
            if tag == AUTOMARSHAL_EXCEPTION and len(message) == 5:
                _, name, text, remote_traceback, fields = message
                _check_texts(name, text, remote_traceback)
                cls = lookup(name)
                codec = None
                if cls is not None and issubclass(cls, BaseException):
                    codec = self._codec_for(cls)
                if codec is None:
                    return RemoteException(name, text, remote_traceback)
                try:
                    exc: BaseException = self._generator.namespace[codec[1]](fields)
                except Exception:
                    return RemoteException(name, text, remote_traceback)
                if remote_traceback:
                    exc.add_note(f"remote traceback:\n{remote_traceback.rstrip()}")
                return exc
            raise mismatch("a result tag", tag)
        except Exception as exc:
            return decode_failure(where, "the result", exc)


def _text(value: str) -> str:
    """``value`` made encodable as CBOR text (no lone surrogates)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe_exception(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _check_texts(*values: Any) -> None:
    for value in values:
        if type(value) is not str:
            raise mismatch("text", value)
