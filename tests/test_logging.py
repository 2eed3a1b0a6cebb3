"""Logging: component loggers, capture of library logs, trace ids, the pretty and
JSON formats and configure_logging's handler."""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from pyweaver._runtime._logging import (
    configure_logging,
    make_logger,
    unconfigure_logging,
)
from pyweaver._runtime._tracing import disable_tracing, enable_tracing, start_span
from pyweaver.contract._logentry import LogEntry, format_json, format_pretty


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.entries: list[LogEntry] = []

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    level = root.level
    capture = Captured()
    configure_logging(
        level="debug",
        stream=capture.stream,
        color=False,
        sink=capture.entries.append,
        replica="replica-0123456789",
        group="main",
        app="shop",
        deployment="dep-1",
    )
    try:
        yield capture
    finally:
        unconfigure_logging()
        root.setLevel(level)


def here() -> int:
    """The line number of the caller."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def test_component_logger_entries(captured: Captured) -> None:
    logger = make_logger("shop.cart.Cart", replica="r-own")
    line = here() + 1
    logger.debug("d")
    logger.info("i", n=1, ok=True, name="Ann")
    logger.warning("w")
    logger.error("e")
    assert [entry.level for entry in captured.entries] == ["debug", "info", "warning", "error"]
    first, info = captured.entries[0], captured.entries[1]
    assert first.component == "shop.cart.Cart"
    assert first.replica == "r-own"  # the logger's own identity wins
    assert (first.group, first.app, first.deployment) == ("main", "shop", "dep-1")
    assert first.file == __file__
    assert [entry.line for entry in captured.entries] == [line, line + 1, line + 2, line + 3]
    assert first.message == "d"
    assert info.attrs == {"n": "1", "ok": "True", "name": "Ann"}
    assert first.source == "logger"
    assert first.trace_id == "" and first.span_id == ""
    assert abs(first.time_ns - time.time_ns()) < 60 * 10**9


def test_bind_and_attribute_precedence(captured: Captured) -> None:
    logger = make_logger("shop.Cart").bind(user="ann", request=7)
    logger.bind(request=8).info("bound", extra="x")
    logger.info("call wins", user="bob")
    logger.info("msg is a plain attribute", msg="m")
    assert [entry.attrs for entry in captured.entries] == [
        {"user": "ann", "request": "8", "extra": "x"},
        {"user": "bob", "request": "7"},
        {"user": "ann", "request": "7", "msg": "m"},
    ]


def test_error_with_exception(captured: Captured) -> None:
    logger = make_logger("shop.Cart")
    try:
        empty: dict[str, int] = {}
        empty["missing"]
    except KeyError as exc:
        logger.error("lookup failed", exc, key="missing")
    (entry,) = captured.entries
    assert entry.attrs["key"] == "missing"
    assert entry.attrs["err"] == "KeyError: 'missing'"
    assert "Traceback (most recent call last)" in entry.attrs["traceback"]
    assert "test_error_with_exception" in entry.attrs["traceback"]
    # The pretty line shows the traceback indented under the line.
    output = captured.stream.getvalue()
    assert "lookup failed" in output
    assert "\n    Traceback (most recent call last)" in output


def test_library_logs_are_captured(captured: Captured) -> None:
    logging.getLogger("some.library").warning("%d%% done", 50, extra={"task_id": 9})
    (entry,) = captured.entries
    assert entry.message == "50% done"
    assert entry.component == ""
    assert entry.attrs == {"logger": "some.library", "task_id": "9"}
    assert (entry.replica, entry.group, entry.app, entry.deployment) == (
        "replica-0123456789",
        "main",
        "shop",
        "dep-1",
    )
    assert entry.file == __file__
    assert captured.lines[0].split()[2] == "some.library"


def test_private_record_attributes_of_other_libraries_are_not_attributes(
    captured: Captured,
) -> None:
    logging.getLogger("lib").warning("x", extra={"_library_bookkeeping": 1, "user": "ann"})
    (entry,) = captured.entries
    assert entry.attrs == {"logger": "lib", "user": "ann"}


def test_entries_carry_the_current_span(captured: Captured) -> None:
    enable_tracing(set_global=False)
    try:
        with start_span("request", require_parent=False) as span:
            make_logger("shop.Cart").info("inside")
            logging.getLogger("lib").info("library too")
    finally:
        disable_tracing()
    context = span.get_span_context()
    for entry in captured.entries:
        assert entry.trace_id == f"{context.trace_id:032x}"
        assert entry.span_id == f"{context.span_id:016x}"


def test_disabled_levels_cost_nothing(captured: Captured) -> None:
    configure_logging(level="info", stream=captured.stream, sink=captured.entries.append)

    class Loud:
        def __str__(self) -> str:
            raise AssertionError("a disabled entry must not format its attributes")

    make_logger("shop.Cart").debug("hidden", value=Loud())
    logging.getLogger("lib").debug("hidden too")
    assert captured.entries == []
    assert captured.stream.getvalue() == ""


def test_configure_logging_is_idempotent_and_sink_only_works() -> None:
    root = logging.getLogger()
    level = root.level
    entries: list[LogEntry] = []
    stream = io.StringIO()
    try:
        configure_logging(stream=stream)
        configure_logging(fmt=None, sink=entries.append)
        ours = [h for h in root.handlers if type(h).__module__ == "pyweaver._runtime._logging"]
        assert len(ours) == 1
        make_logger("shop.Cart").info("only to the sink")
        assert [entry.message for entry in entries] == ["only to the sink"]
        assert stream.getvalue() == ""
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging(level="loud")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown log format"):
            configure_logging(fmt="xml")  # type: ignore[arg-type]
    finally:
        unconfigure_logging()
        root.setLevel(level)
    assert not [h for h in root.handlers if type(h).__module__ == "pyweaver._runtime._logging"]


def test_a_sink_that_logs_does_not_recurse() -> None:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    shipped: list[str] = []

    def sink(entry: LogEntry) -> None:
        shipped.append(entry.message)
        logging.getLogger("shipper").warning("shipping failed")

    try:
        configure_logging(fmt=None, stream=stream, sink=sink)
        make_logger("shop.Cart").info("real entry")
    finally:
        unconfigure_logging()
        root.setLevel(level)
    assert shipped == ["real entry"]
    assert "shipping failed" in stream.getvalue()


def test_json_lines_output() -> None:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    try:
        configure_logging(fmt="json", stream=stream)
        make_logger("shop.Cart").info("as json", n=1)
    finally:
        unconfigure_logging()
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    entry = LogEntry.from_wire(json.loads(line))
    assert entry.message == "as json"
    assert entry.attrs == {"n": "1"}
    assert entry.component == "shop.Cart"


def _entry(**fields: object) -> LogEntry:
    base: dict[str, object] = {
        "time_ns": 1_700_000_000_123_456_789,
        "level": "info",
        "message": "ready",
        "component": "app.Reverser",
        "file": "/src/app.py",
        "line": 14,
        "attrs": {"pid": "1234"},
    }
    base.update(fields)
    return LogEntry(**base)  # type: ignore[arg-type]


def _stamp(time_ns: int) -> str:
    seconds = time_ns // 10**9
    millis = time_ns // 10**6 % 1000
    return time.strftime("%m%d %H:%M:%S", time.localtime(seconds)) + f".{millis:03d}"


def test_format_pretty() -> None:
    entry = _entry()
    stamp = _stamp(entry.time_ns)
    assert format_pretty(entry) == f"I{stamp} app.Reverser      app.py:14] ready pid=1234"
    assert format_pretty(
        _entry(component="shop.services.cart.Cart", replica="0123456789abcdef", level="error")
    ) == (f"E{stamp} cart.Cart         01234567 app.py:14] ready pid=1234")
    quoted = format_pretty(_entry(attrs={"q": 'say "hi"', "empty": "", "sp": "a b", "eq": "a=b"}))
    assert quoted.endswith(' q="say \\"hi\\"" empty="" sp="a b" eq="a=b"')
    library = format_pretty(_entry(component="", attrs={"logger": "httpx", "k": "v"}))
    assert library == f"I{stamp} httpx             app.py:14] ready k=v"
    stdout = format_pretty(_entry(component="", source="stdout", file="", line=0, attrs={}))
    assert stdout == f"I{stamp} stdout            ] ready"


def test_format_pretty_colour() -> None:
    plain = format_pretty(_entry(level="error"))
    coloured = format_pretty(_entry(level="error"), color=True)
    assert "\x1b[31m" in coloured
    assert re.sub(r"\x1b\[\d+m", "", coloured) == plain


def test_colour_follows_the_tty() -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    level = root.level
    tty = TTY()
    try:
        configure_logging(stream=tty)
        make_logger("shop.Cart").warning("coloured")
    finally:
        unconfigure_logging()
        root.setLevel(level)
    assert "\x1b[33m" in tty.getvalue()


def test_format_json_round_trips() -> None:
    entry = _entry(trace_id="a" * 32, span_id="b" * 16, attrs={"é": "ü\n"})
    line = format_json(entry)
    assert "\n" not in line
    assert LogEntry.from_wire(json.loads(line)) == entry
