"""The public API is exactly what DESIGN.md §1 names, re-exported explicitly."""

from __future__ import annotations

import pyweaver as weaver
from pyweaver import weavertest

EXPECTED = {
    "AutoMarshal",
    "ConfigError",
    "Implements",
    "Instance",
    "Listener",
    "ListenerOptions",
    "Logger",
    "PyWeaverError",
    "Ref",
    "RegistrationError",
    "RemoteCallError",
    "RemoteException",
    "RetriableError",
    "WeaverInfo",
    "WithConfig",
    "WithRouter",
    "__version__",
    "get",
    "init",
    "instrument_handler",
    "metadata",
    "metrics",
    "not_retriable",
    "serve_asgi",
}


def test_public_names_are_pinned() -> None:
    assert set(weaver.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(weaver, name), name


def test_no_private_module_leaks_into_the_namespace() -> None:
    # ("@py_builtins" and friends are pytest's assertion rewriting, not ours.)
    public = {name for name in vars(weaver) if not name.startswith(("_", "@"))}
    # Subpackages appear as attributes once imported; they are documented surfaces.
    allowed = EXPECTED | {"call", "contract", "envelope", "deployers", "weavertest"}
    assert public <= allowed, public - allowed


def test_metrics_and_weavertest_surfaces() -> None:
    assert {"Counter", "Gauge", "Histogram"} <= set(weaver.metrics.__all__)
    assert set(weavertest.__all__) == {"MODES", "Fake", "Runner", "fake"}
    assert weavertest.MODES == ("local", "rpc", "multi")
    from pyweaver.weavertest import sim

    assert set(sim.__all__) == {
        "Call",
        "Options",
        "Program",
        "Workload",
        "invariant",
        "operation",
        "programs",
        "replay",
        "run",
    }


def test_errors_form_the_documented_tree() -> None:
    assert issubclass(weaver.RetriableError, weaver.RemoteCallError)
    assert issubclass(weaver.RemoteCallError, weaver.PyWeaverError)
    assert not issubclass(weaver.RemoteException, weaver.RemoteCallError)
