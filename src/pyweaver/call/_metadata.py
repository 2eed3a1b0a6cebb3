"""``weaver.metadata``: a context-local ``dict[str, str]`` that travels with every
component call, local or remote, hop after hop.

It lives in a :class:`contextvars.ContextVar`, so each task sees its own copy and a
``with metadata.set(...)`` block only affects calls made inside it. The call protocol
carries the current map in every request header, and the server installs it for the
duration of the handler, so it keeps travelling on the next hop.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

__all__ = ["Metadata", "metadata"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "pyweaver_metadata", default=_EMPTY
)


class Metadata:
    """The accessor behind ``weaver.metadata``."""

    __slots__ = ()

    def get(self) -> Mapping[str, str]:
        """The metadata in force in this context (read-only)."""
        return _current.get()

    @contextmanager
    def set(self, values: Mapping[str, str] | None = None, /, **items: str) -> Iterator[None]:
        """Add (or override) entries for the duration of the ``with`` block."""
        merged = dict(_current.get())
        if values:
            merged.update(values)
        merged.update(items)
        for key, value in merged.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"weaver.metadata keys and values must be str, got {key!r}: {value!r}"
                )
        token = _current.set(MappingProxyType(merged))
        try:
            yield
        finally:
            _current.reset(token)

    def __repr__(self) -> str:
        return f"weaver.metadata({dict(_current.get())!r})"


metadata = Metadata()


def current() -> Mapping[str, str]:
    """Fast accessor for the call protocol (no method lookup)."""
    return _current.get()


def install(values: Mapping[str, str]) -> contextvars.Token[Mapping[str, str]]:
    """Install received metadata in the current context (server side of a call)."""
    return _current.set(MappingProxyType(dict(values)) if values else _EMPTY)


def reset(token: contextvars.Token[Mapping[str, str]]) -> None:
    _current.reset(token)
