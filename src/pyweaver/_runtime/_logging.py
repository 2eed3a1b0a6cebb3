"""Logging: the component logger (``self.logger``), the process-wide handler that
turns every stdlib log record into a :class:`~pyweaver.contract._logentry.LogEntry`, and the
pretty and JSON-lines formats.

Theory of operation
-------------------
:class:`Logger` is a thin, structured front on a stdlib logger
(``pyweaver.app.<component>``): it checks ``isEnabledFor`` first (a disabled debug
call builds nothing), then logs a record carrying a :class:`_RecordContext` (the
component's identity and the entry's attributes) with ``stacklevel`` pointing at the
caller, so file:line is the app's.

:func:`configure_logging` installs one handler on the root logger, so records of
*every* stdlib logger (pyweaver's and libraries') become LogEntries: app records
take their component and attributes from their context; other records get the
logger's name as the ``logger`` attribute, plus any ``extra=`` fields. Records
under ``pyweaver.`` but not ``pyweaver.app.`` are pyweaver's own ("system") logs.
The trace and span ids of the current OpenTelemetry span, when valid, are added at
that point (handlers run synchronously in the logging call's context). Each entry
goes to the stream (pretty or JSON lines) and/or a sink; the multi-process weavelet
uses a sink to ship entries to the envelope in batches.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Final, Literal, TextIO

from opentelemetry import trace

from pyweaver.contract._logentry import LogEntry, format_json, format_pretty

__all__ = [
    "FAILURES_PER_WINDOW",
    "FAILURE_WINDOW_NS",
    "LogSink",
    "Logger",
    "configure_logging",
    "entry_from_record",
    "make_logger",
    "method_failure_logger",
    "unconfigure_logging",
]

LogSink = Callable[[LogEntry], None]
Level = Literal["debug", "info", "warning", "error"]

APP_LOGGER_PREFIX: Final = "pyweaver.app."
_CONTEXT_ATTR: Final = "pyweaver_context"

_LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Identity:
    """Who is logging: the component, and the replica, group, app and deployment
    it runs in ("" = fill in from the process identity given to configure_logging)."""

    __slots__ = ("app", "component", "deployment", "group", "replica")

    def __init__(self, component: str, replica: str, group: str, app: str, deployment: str) -> None:
        self.component = component
        self.replica = replica
        self.group = group
        self.app = app
        self.deployment = deployment


class _RecordContext:
    """What a :class:`Logger` attaches to each stdlib record it makes."""

    __slots__ = ("attrs", "identity")

    def __init__(self, identity: _Identity, attrs: dict[str, str]) -> None:
        self.identity = identity
        self.attrs = attrs


def _text(value: object) -> str:
    return value if type(value) is str else str(value)


class Logger:
    """A component's structured logger: ``logger.info("ready", port=8000)``.

    Attribute values are turned into strings when the entry is made.
    """

    __slots__ = ("_bound", "_identity", "_std")

    def __init__(
        self, std: logging.Logger, identity: _Identity, bound: dict[str, str] | None = None
    ) -> None:
        self._std = std
        self._identity = identity
        self._bound: dict[str, str] = bound or {}

    @property
    def component(self) -> str:
        return self._identity.component

    @property
    def stdlib_logger(self) -> logging.Logger:
        """The underlying stdlib logger (e.g. to change its level)."""
        return self._std

    def bind(self, **attrs: object) -> Logger:
        """A logger adding ``attrs`` to every entry (on top of this one's)."""
        bound = dict(self._bound)
        bound.update({key: _text(value) for key, value in attrs.items()})
        return Logger(self._std, self._identity, bound)

    def debug(self, msg: str, /, **attrs: object) -> None:
        if self._std.isEnabledFor(logging.DEBUG):
            self._log(logging.DEBUG, msg, attrs, None)

    def info(self, msg: str, /, **attrs: object) -> None:
        if self._std.isEnabledFor(logging.INFO):
            self._log(logging.INFO, msg, attrs, None)

    def warning(self, msg: str, /, **attrs: object) -> None:
        if self._std.isEnabledFor(logging.WARNING):
            self._log(logging.WARNING, msg, attrs, None)

    def error(self, msg: str, /, err: BaseException | None = None, **attrs: object) -> None:
        """Log an error; ``err`` adds an ``err`` attribute and its traceback."""
        if self._std.isEnabledFor(logging.ERROR):
            self._log(logging.ERROR, msg, attrs, err)

    def _log(
        self, level: int, msg: str, attrs: dict[str, object], err: BaseException | None
    ) -> None:
        if attrs:
            merged = dict(self._bound)
            merged.update({key: _text(value) for key, value in attrs.items()})
        else:
            merged = self._bound
        self._std.log(
            level,
            msg,
            exc_info=(type(err), err, err.__traceback__) if err is not None else None,
            extra={_CONTEXT_ATTR: _RecordContext(self._identity, merged)},
            # 1 = this method, 2 = info() & co., 3 = the app code that called them.
            stacklevel=3,
        )

    def __repr__(self) -> str:
        return f"<pyweaver Logger {self._identity.component!r}>"


def make_logger(
    component: str,
    *,
    replica: str = "",
    group: str = "",
    app: str = "",
    deployment: str = "",
) -> Logger:
    """The logger of ``component`` (its full name), on the stdlib logger
    ``pyweaver.app.<component>``. Empty identity fields are filled in from the
    process identity given to :func:`configure_logging`."""
    return Logger(
        logging.getLogger(APP_LOGGER_PREFIX + component),
        _Identity(component, replica, group, app, deployment),
    )


# -- failed method calls -----------------------------------------------------------------

FAILURES_PER_WINDOW: Final = 5  # failures logged per method per window; the rest are counted
FAILURE_WINDOW_NS: Final = 10 * 10**9
_LOGGED: Final = "_pyweaver_failure_logged"


def method_failure_logger(
    component: str, method: str, *, clock: Callable[[], int] = time.monotonic_ns
) -> Callable[[BaseException], None]:
    """A function the stubs call with each exception a call of ``component.method``
    raised (the server-side handler for remote calls, the local stub for local ones).

    It logs one error entry per failure, naming the component and method, at the
    ``file:line`` that raised, with the traceback in the ``traceback`` attribute (one
    entry, however long); at most :data:`FAILURES_PER_WINDOW` per
    :data:`FAILURE_WINDOW_NS`, the first entry after a window that dropped some says
    how many in its ``suppressed`` attribute. An exception that passes through
    several local stubs is logged once, by the innermost.
    """
    std = logging.getLogger(APP_LOGGER_PREFIX + component)
    identity = _Identity(component, "", "", "", "")
    window_start = -FAILURE_WINDOW_NS
    logged = suppressed = 0

    def log_failure(exc: BaseException) -> None:
        nonlocal window_start, logged, suppressed
        if getattr(exc, _LOGGED, False):
            return
        try:
            setattr(exc, _LOGGED, True)
        except AttributeError:  # an exception type that takes no attributes
            pass
        now = clock()
        dropped = 0
        if now - window_start >= FAILURE_WINDOW_NS:
            window_start, logged, dropped, suppressed = now, 0, suppressed, 0
        if logged >= FAILURES_PER_WINDOW:
            suppressed += 1
            return
        logged += 1
        if not std.isEnabledFor(logging.ERROR):
            return
        attrs = {"method": method}
        if dropped:
            attrs["suppressed"] = str(dropped)
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        path, line = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb else ("", 0)
        summary = f"{type(exc).__qualname__}: {exc}".split("\n", 1)[0][:200]
        record = std.makeRecord(
            std.name,
            logging.ERROR,
            path,
            line,
            f"{component}.{method} failed: {summary}",
            (),
            (type(exc), exc, exc.__traceback__),
            extra={_CONTEXT_ATTR: _RecordContext(identity, attrs)},
        )
        std.handle(record)

    return log_failure


# -- records to entries ---------------------------------------------------------------

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_RECORD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    _CONTEXT_ATTR,
}
_NO_IDENTITY: Final = _Identity("", "", "", "", "")


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def entry_from_record(record: logging.LogRecord, process: _Identity | None = None) -> LogEntry:
    """The LogEntry for a stdlib record, in the current (OpenTelemetry) context."""
    process = process or _NO_IDENTITY
    context = getattr(record, _CONTEXT_ATTR, None)
    if isinstance(context, _RecordContext):
        identity = context.identity
        attrs = dict(context.attrs)
    else:
        identity = _NO_IDENTITY
        attrs = {"logger": record.name}
        for key, value in vars(record).items():
            # Private names are other libraries' bookkeeping (Ray's record factory adds
            # ``_ray_timestamp_ns`` to every record), not ``extra=`` fields.
            if key not in _STANDARD_RECORD_ATTRS and not key.startswith("_"):
                attrs[key] = _text(value)
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        attrs["err"] = f"{type(exc).__qualname__}: {exc}"
        attrs["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
    span_context = trace.get_current_span().get_span_context()
    return LogEntry(
        time_ns=int(record.created * 1e9),
        level=_level_name(record.levelno),
        message=record.getMessage(),
        component=identity.component,
        replica=identity.replica or process.replica,
        group=identity.group or process.group,
        app=identity.app or process.app,
        deployment=identity.deployment or process.deployment,
        file=record.pathname,
        line=record.lineno,
        attrs=attrs,
        trace_id=format(span_context.trace_id, "032x") if span_context.is_valid else "",
        span_id=format(span_context.span_id, "016x") if span_context.is_valid else "",
    )


# -- the process-wide handler ---------------------------------------------------------


class _Handler(logging.Handler):
    """Turns records into LogEntries for a stream and/or a sink."""

    def __init__(
        self,
        fmt: Literal["pretty", "json"] | None,
        stream: TextIO | None,
        color: bool | None,
        sink: LogSink | None,
        process: _Identity,
    ) -> None:
        super().__init__()
        self._local = threading.local()
        self._format = fmt
        self._stream = stream
        self._color = color
        self._sink = sink
        self._process = process

    def emit(self, record: logging.LogRecord) -> None:
        # A sink that logs (say, a failing shipper reporting its failure) would
        # re-enter this handler forever; nested records go to the stream (stderr by
        # default) and never to the sink.
        nested = getattr(self._local, "emitting", False)
        self._local.emitting = True
        try:
            entry = entry_from_record(record, self._process)
            if self._format is not None or nested:
                # Resolved per record so a replaced sys.stderr (pytest's capture,
                # a daemon's redirect) is honoured.
                stream = self._stream or sys.stderr
                if self._format == "json":
                    text = format_json(entry)
                else:
                    color = self._color
                    if color is None:
                        color = _is_tty(stream)
                    text = format_pretty(entry, color=color)
                stream.write(text + "\n")
                stream.flush()
            if self._sink is not None and not nested:
                self._sink(entry)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        finally:
            self._local.emitting = nested


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(
    *,
    level: Level = "info",
    fmt: Literal["pretty", "json"] | None = "pretty",
    stream: TextIO | None = None,
    color: bool | None = None,
    sink: LogSink | None = None,
    replica: str = "",
    group: str = "",
    app: str = "",
    deployment: str = "",
) -> None:
    """Route every stdlib log record of this process through pyweaver.

    Installs one handler on the root logger (replacing any earlier pyweaver handler,
    so calling it again reconfigures) and sets the root level. Each record becomes
    a LogEntry, written to ``stream`` (default: the current ``sys.stderr``) in
    ``fmt`` (``None``: no stream output), with colour when ``color`` is true
    (default: when the stream is a TTY), and handed to ``sink`` when given.
    ``replica``/``group``/``app``/``deployment`` fill in entries whose logger
    does not say (library logs, loggers made without them).
    """
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {sorted(_LEVELS)}")
    if fmt not in ("pretty", "json", None):
        raise ValueError(f"unknown log format {fmt!r}: use 'pretty', 'json' or None")
    unconfigure_logging()
    root = logging.getLogger()
    root.addHandler(
        _Handler(fmt, stream, color, sink, _Identity("", replica, group, app, deployment))
    )
    root.setLevel(_LEVELS[level])


def unconfigure_logging() -> None:
    """Remove the handler :func:`configure_logging` installed, if any."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
            handler.close()
