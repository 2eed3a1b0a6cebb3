"""The codec's front: :class:`Codec` judges types and compiles one :class:`MethodCodec`
per component method, composing the type judge (:mod:`._types`), the generated entry
points (:mod:`._generate`) and the exception codec (:mod:`._exceptions`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from pyweaver._runtime._codec._compile import Generator
from pyweaver._runtime._codec._exceptions import ExceptionCodec
from pyweaver._runtime._codec._generate import (
    define_decode_args,
    define_decode_result,
    define_encode_args,
    define_encode_result,
)
from pyweaver._runtime._codec._types import Shapes

__all__ = ["Codec", "MethodCodec"]


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
        self._generator = Generator()
        self._shapes = Shapes(self._generator, plain_attrs=plain_attrs)
        self._exceptions = ExceptionCodec(self._shapes, self._generator)
        # Bound once: every method's result decoder names this one object.
        self._decode_exception = self._exceptions.decode

    def check_type(self, tp: Any, where: str) -> None:
        """Raise :class:`~pyweaver.RegistrationError` unless values of ``tp`` can cross
        the wire. The message starts with ``where`` (e.g. ``"app.Reverser.reverse
        parameter 's'"``) and names the offending type and the path to it."""
        self._shapes.judge(tp, where)

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
            self._shapes.judge(tp, f"{where} {label}")
            for tp, label in zip(arg_types, labels, strict=True)
        ]
        result_shape = self._shapes.judge(result_type, f"{where} result")
        encode_args = define_encode_args(self._generator, arg_shapes, where)
        decode_args = define_decode_args(self._generator, arg_shapes, labels, where)
        encode_result = define_encode_result(self._generator, result_shape, where)
        decode_result = define_decode_result(
            self._generator, result_shape, where, self._decode_exception
        )

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
            encode_exception=self._exceptions.encode,
            decode_result=decode_result,
            copy_args=copy_args,
            copy_result=copy_result,
            schema=f"({arg_schema}) -> {result_shape.schema(seen)}",
        )

    def encode_exception(self, exc: BaseException) -> bytes:
        """The result message for an exception raised by a method. Never raises: an
        exception that cannot travel as itself travels as a RemoteException."""
        return self._exceptions.encode(exc)
