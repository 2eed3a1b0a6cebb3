"""The optional C part of the colocated call path, and what stands in without it.

``_localcall.c`` makes a local stub method cost ~1.6-1.8x a plain ``await`` instead of
~2.4-2.7x (``benchmarks/run.py local``): it does the stub's bookkeeping without a Python
frame (see its header). pyweaver's build compiles it when a C compiler is at hand
(``hatch_build.py``); without one, or with ``PYWEAVER_NO_SPEEDUPS=1`` in the
environment, the same stubs run in pure Python, with the same counts, logs and spans.

:data:`LocalMethod` is the C stub method type, or ``None``; :class:`CallCounter` is
the base of ``MethodMetrics`` holding the sampling countdown, a C type when
:data:`LocalMethod` is one (both must agree on where the countdown lives).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

__all__ = ["NO_SPEEDUPS_ENV", "CallCounter", "LocalMethod", "speedups_disabled"]

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
else:
    LocalMethod = None
    CallCounter = _PythonCallCounter
    if not speedups_disabled():
        try:  # (the package, not the module: import-linter cannot see a C module)
            from pyweaver._runtime import _localcall
        except ImportError:  # not built: no C compiler when pyweaver was installed
            pass
        else:
            CallCounter = _localcall.CallCounter
            LocalMethod = _localcall.LocalMethod
