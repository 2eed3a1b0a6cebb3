"""A failed component method call is logged once, where it ran: one error entry
naming the component and method, at the line that raised, with the traceback as an
attribute; rate-limited per method."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pyweaver import weavertest
from pyweaver._runtime._logging import (
    FAILURE_WINDOW_NS,
    FAILURES_PER_WINDOW,
    configure_logging,
    method_failure_logger,
    unconfigure_logging,
)
from pyweaver.contract._logentry import LogEntry

from .components import Greeter

pytestmark = pytest.mark.anyio

GREETER = "tests.components.Greeter"


@pytest.fixture
def entries() -> Iterator[list[LogEntry]]:
    root = logging.getLogger()
    level = root.level
    captured: list[LogEntry] = []
    configure_logging(level="info", stream=io.StringIO(), sink=captured.append, app="shop")
    try:
        yield captured
    finally:
        unconfigure_logging()
        root.setLevel(level)


def failures(entries: list[LogEntry], method: str) -> list[LogEntry]:
    return [e for e in entries if e.component == GREETER and e.attrs.get("method") == method]


@pytest.mark.parametrize("mode", ["local", "rpc"])
async def test_a_failed_call_is_one_error_entry_with_its_traceback(
    mode: str, entries: list[LogEntry]
) -> None:
    async with weavertest.Runner(mode) as app:
        greeter = await app.get(Greeter)
        with pytest.raises(Exception, match="bad value"):
            await greeter.fail("value")
        assert await greeter.greet("ann") == "Hello, ann!"  # success logs nothing
    logged = failures(entries, "fail")
    assert logged, entries
    # rpc mode runs every retriable call twice: each run that failed is one entry.
    assert len(logged) == (1 if mode == "local" else 2), logged
    entry = logged[0]
    assert entry.level == "error"
    assert entry.message == f"{GREETER}.fail failed: ValueError: bad value"
    assert entry.file.endswith("components.py")
    with open(entry.file) as source:
        assert 'raise ValueError("bad value")' in source.read().splitlines()[entry.line - 1]
    traceback = entry.attrs["traceback"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("ValueError: bad value")
    assert entry.attrs["err"] == "ValueError: bad value"
    assert entry.app == "shop"
    assert not failures(entries, "greet")


async def test_an_exception_through_nested_local_stubs_is_logged_once(
    entries: list[LogEntry],
) -> None:
    outer = method_failure_logger("app.Outer", "call")
    inner = method_failure_logger("app.Inner", "call")
    try:
        raise KeyError("k")
    except KeyError as exc:
        inner(exc)
        outer(exc)  # the same exception leaving the outer stub
    (entry,) = entries
    assert entry.component == "app.Inner"


def test_failures_are_rate_limited_per_method(entries: list[LogEntry]) -> None:
    now = [0]
    log = method_failure_logger("app.Cart", "add", clock=lambda: now[0])
    other = method_failure_logger("app.Cart", "remove", clock=lambda: now[0])
    for i in range(FAILURES_PER_WINDOW + 3):
        log(ValueError(f"failure {i}"))
    other(ValueError("other method"))
    assert [e.message.rsplit(": ", 1)[1] for e in entries] == [
        *(f"failure {i}" for i in range(FAILURES_PER_WINDOW)),
        "other method",
    ]
    assert all("suppressed" not in e.attrs for e in entries)
    now[0] += FAILURE_WINDOW_NS
    log(ValueError("next window"))
    assert entries[-1].message.endswith("next window")
    assert entries[-1].attrs["suppressed"] == "3"
    assert entries[-1].attrs["traceback"] == "ValueError: next window"
