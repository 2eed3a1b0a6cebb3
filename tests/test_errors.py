"""Every exception class pyweaver defines lives in pyweaver._errors (the one tree)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pyweaver
import pyweaver._errors as errors


def defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(pyweaver.__path__, "pyweaver."):
        if info.name.endswith(".__main__"):
            continue  # importing it runs the CLI
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("pyweaver"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_exception_is_defined_in_errors() -> None:
    found = defined_exceptions()
    assert len(found) > 20  # the walk really imported the package
    outside = sorted(
        name
        for name, cls in found.items()
        if cls.__module__ != errors.__name__ and not cls.__name__.startswith("_")
    )
    assert outside == []


def test_every_error_is_in_the_drawn_tree() -> None:
    drawing = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in drawing, name


def test_old_import_paths_still_work() -> None:
    from pyweaver.call import HandshakeError, Unavailable
    from pyweaver.call._session import CallFailure, ConnectionLost, NotSent, ServerError
    from pyweaver.contract import BootstrapError
    from pyweaver.deployers._logstore import LogQueryError
    from pyweaver.deployers._proxy import ListenerInUseError, ProxyError
    from pyweaver.deployers._registry import DeploymentNotFoundError
    from pyweaver.deployers.multi import DeploymentFailed
    from pyweaver.envelope import (
        CrashLoopError,
        ProcessError,
        ProcessExitedError,
        ReadinessTimeoutError,
    )

    moved = [
        HandshakeError, Unavailable, CallFailure, ConnectionLost, NotSent, ServerError,
        BootstrapError, LogQueryError, ListenerInUseError, ProxyError,
        DeploymentNotFoundError, DeploymentFailed, CrashLoopError, ProcessError,
        ProcessExitedError, ReadinessTimeoutError,
    ]  # fmt: skip
    assert all(getattr(errors, cls.__name__) is cls for cls in moved)
    assert all(issubclass(cls, errors.PyWeaverError) for cls in moved if cls is not Unavailable)
    assert not issubclass(Unavailable, errors.PyWeaverError)
