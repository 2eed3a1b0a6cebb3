"""Shared test setup.

* ``anyio_backend``: every async test runs on asyncio and on trio (``tests/call`` overrides
  it to add asyncio+uvloop, which only the call protocol's drivers care about).
* ``speedups``: a test that takes it runs with the C stub methods and with the
  pure-Python ones (``tests/test_local_stubs.py``, ``tests/test_stubs.py``).
* The ``slow`` marker: a test that starts a process is ``slow``, so that
  ``pytest -m "not slow"`` is a fast subset (local and rpc modes, protocol, codec,
  config...). weavertest's ``multi`` mode is marked here, once, for every test
  parametrized over ``mode``; whole modules that start processes carry
  ``pytestmark = pytest.mark.slow``; single tests carry ``@pytest.mark.slow``.
* A guard keeps the marking true: an audit hook sees every process this test process
  starts (``subprocess``, asyncio, trio and anyio all go through ``subprocess.Popen``;
  ``os.fork``/``os.posix_spawn``/``os.exec*``/``os.system`` too), and a test that starts
  one without the ``slow`` marker fails, naming what it started.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Generator

import pytest

_PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.system",
    }
)

# The processes started since the current test's setup began (event and program).
_process_starts: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event in _PROCESS_EVENTS:
        # subprocess.Popen: (executable, args, cwd, env), executable often None.
        program = next((arg for arg in args[:2] if arg is not None), "")
        if isinstance(program, (list, tuple)) and program:
            program = program[0]
        _process_starts.append(f"{event}({program!r})")


sys.addaudithook(_audit)

pytest_plugins = ["pytester"]


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[pytest.param(True, id="C"), pytest.param(False, id="python")])
def speedups(request: pytest.FixtureRequest) -> bool:
    """The stubs' ``speedups`` flag: the C stub methods (what the runtime uses whenever
    ``_localcall.c`` is built; skipped when it is not) and the pure-Python ones."""
    from pyweaver._runtime import _speedups

    if request.param and _speedups.LocalMethod is None:
        pytest.skip("the C module is not built (see test_local_stubs.py)")
    return bool(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """weavertest's multi mode starts a deployer and its weavelet processes: slow."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("mode") == "multi":
            item.add_marker(pytest.mark.slow)


def _check_no_unmarked_process(item: pytest.Item) -> None:
    if _process_starts and item.get_closest_marker("slow") is None:
        started = ", ".join(dict.fromkeys(_process_starts))
        _process_starts.clear()  # reported once, not again at teardown
        pytest.fail(
            f"{item.nodeid} starts processes ({started}) but is not marked slow: add "
            "@pytest.mark.slow (or pytestmark = pytest.mark.slow for the module)",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _process_starts.clear()
    result = yield
    _check_no_unmarked_process(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    _check_no_unmarked_process(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    _check_no_unmarked_process(item)
    return result


def pytest_configure(config: pytest.Config) -> None:
    # Apps started by tests (in this process or as children) register themselves in the
    # deployment registry: keep them out of the user's real data dir.
    if "PYWEAVER_DATA_DIR" not in os.environ:
        os.environ["PYWEAVER_DATA_DIR"] = tempfile.mkdtemp(prefix="pyweaver-tests-")
