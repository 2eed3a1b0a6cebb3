"""The optional C part of the stubs, and what stands in without it.

``_localcall.c`` makes a local stub method cost ~1.6-1.8x a plain ``await`` instead of
~2.4-2.7x (``benchmarks/run.py local``): it does the stub's bookkeeping without a Python
frame (see its header). It does the same for remote stub methods (encode, await the
call client, decode, record), and writes and reads the codecs' one-string messages
(the usual payload of a remote call) in one C call each. pyweaver's build compiles it
when a C compiler is at hand (``hatch_build.py``); without one, or with
``PYWEAVER_NO_SPEEDUPS=1`` in the environment, the same stubs and codecs run in pure
Python, with the same bytes, counts, logs and spans.

:data:`LocalMethod` and :data:`RemoteMethod` are the C stub method types, or ``None``;
:class:`CallCounter` is the base of ``MethodMetrics`` holding the sampling countdown, a
C type when :data:`LocalMethod` is one (both must agree on where the countdown lives);
:func:`codec` gives the C codec helpers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

__all__ = [
    "NO_SPEEDUPS_ENV",
    "CallCounter",
    "LocalMethod",
    "RemoteMethod",
    "codec",
    "speedups_disabled",
]

#: Set to anything but "" or "0" to run without the C part (read once, at import).
NO_SPEEDUPS_ENV: Final = "PYWEAVER_NO_SPEEDUPS"


def speedups_disabled() -> bool:
    """Whether :data:`NO_SPEEDUPS_ENV` turns the C part off."""
    return os.environ.get(NO_SPEEDUPS_ENV, "").strip() not in ("", "0")


class _PythonCallCounter:
    """The sampling countdown of MethodMetrics, without the C module."""

    __slots__ = ("abandoned", "countdown", "countdown_resets")

    countdown: int
    countdown_resets: int
    abandoned: int  # only the C stubs abandon calls (made, never awaited)


if TYPE_CHECKING:
    from pyweaver._runtime import _localcall

    CallCounter = _localcall.CallCounter
    LocalMethod: type[_localcall.LocalMethod] | None
    RemoteMethod: type[_localcall.RemoteMethod] | None
else:
    LocalMethod = RemoteMethod = None
    _localcall = None
    CallCounter = _PythonCallCounter
    if not speedups_disabled():
        try:  # (the package, not the module: import-linter cannot see a C module)
            from pyweaver._runtime import _localcall
        except ImportError:  # not built: no C compiler when pyweaver was installed
            pass
        else:
            CallCounter = _localcall.CallCounter
            LocalMethod = _localcall.LocalMethod
            RemoteMethod = _localcall.RemoteMethod


def codec(name: str) -> Callable[..., Any] | None:
    """The C module's codec helper ``name`` (``bytes_after``, ``text_after``,
    ``bytes_message``, ``text_message``: see ``_codec/_compile.py``), or None."""
    return None if LocalMethod is None else getattr(_localcall, name)
