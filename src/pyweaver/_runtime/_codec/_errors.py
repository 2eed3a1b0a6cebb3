"""The codec's two errors, and how they reach the user.

* :class:`_Mismatch`: a decoded value does not have the shape its type demands. Raised by
  the generated decoders, it collects where it happened (parameter, field, element) on its
  way up and never leaves the codec: the method's entry point turns it into a
  :class:`~pyweaver.RemoteCallError` naming the method (:func:`decode_failure`), as it
  does any exception raised while encoding (:func:`encode_failure`).
* :class:`_Unsupported`: a type that cannot cross the wire, with the path that led to it
  (``app.Order.items -> list[app.Item] -> app.Item.lock``); :class:`~._types.Shapes`
  turns it into a :class:`~pyweaver.RegistrationError` at registration.
"""

from __future__ import annotations

import reprlib

from pyweaver._errors import RemoteCallError

__all__ = ["_Mismatch", "_Unsupported", "decode_failure", "encode_failure", "mismatch"]


class _Mismatch(Exception):
    """A decoded value does not have the expected shape. Never escapes the codec."""

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


def mismatch(expected: str, value: object) -> _Mismatch:
    return _Mismatch(f"expected {expected}, got {type(value).__name__} {_short_repr.repr(value)}")


def _failure(where: str, what: str, verb: str, exc: BaseException) -> RemoteCallError:
    reason = str(exc) if isinstance(exc, _Mismatch) else f"{type(exc).__name__}: {exc}"
    return RemoteCallError(f"{where}: cannot {verb} {what}: {reason}")


def encode_failure(where: str, what: str, exc: BaseException) -> RemoteCallError:
    return _failure(where, what, "encode", exc)


def decode_failure(where: str, what: str, exc: BaseException) -> RemoteCallError:
    return _failure(where, what, "decode", exc)


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
