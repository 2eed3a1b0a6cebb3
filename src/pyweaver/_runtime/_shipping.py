"""Shipping a weavelet's telemetry to its deployer: log entries and finished spans go to
the envelope over the control channel in batches, off the caller's path."""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, Final

import anyio

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver.contract import _messages as m
from pyweaver.contract._logentry import LogEntry, format_json

__all__ = ["LogShipper", "SpanShipper"]

_LOG_BATCH: Final = 256  # entries: ship at once when this many are waiting
_LOG_INTERVAL: Final = 0.1  # seconds a batch may gather before it is shipped
_LOG_IDLE_POLL: Final = 1.0  # seconds between looks for entries logged by other threads
_MAX_PENDING_SPANS: Final = 100_000  # spans kept while the envelope is slow; older dropped


class LogShipper:
    """Buffers this process's log entries and ships them to the envelope in batches.

    Before the envelope is reachable and after the weavelet stopped (or when shipping
    fails), entries are written to stderr instead, one JSON line each behind
    ``LOG_LINE_PREFIX``, which the envelope turns back into the same entries: nothing
    is lost, nothing is shipped twice.
    """

    def __init__(self) -> None:
        self._pending: deque[LogEntry] = deque()
        self._wake = anyio.Event()
        self._shipping = False
        self._loop_thread = 0

    def sink(self, entry: LogEntry) -> None:
        if not self._shipping:
            _write_stderr(entry)
            return
        self._pending.append(entry)  # deque.append is safe from any thread
        # Wake the shipper for the first entry of a batch (and for a full batch), but
        # only from the event loop's thread: an anyio Event is not thread-safe. Entries
        # logged by other threads are picked up by the shipper's idle poll.
        if (len(self._pending) == 1 or len(self._pending) >= _LOG_BATCH) and (
            threading.get_ident() == self._loop_thread
        ):
            self._wake.set()

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._shipping = True

    async def run(self, control: call.Client) -> None:
        while self._shipping:
            with anyio.move_on_after(_LOG_IDLE_POLL):
                await self._wake.wait()
            self._wake = anyio.Event()
            if len(self._pending) < _LOG_BATCH:
                await anyio.sleep(_LOG_INTERVAL)  # let a batch gather
            await self._flush(control)

    async def close(self, control: call.Client, *, ship: bool = True) -> None:
        """Ship what is pending (bounded; not when the weavelet is being torn down,
        when the client may be gone already), then write to stderr from now on."""
        if ship:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await self._flush(control)
        self._shipping = False
        while self._pending:
            _write_stderr(self._pending.popleft())

    async def _flush(self, control: call.Client) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), 1024))]
            try:
                await control.call(m.LOG_BATCH.key, m.encode(m.LogBatch(entries=batch)))
            except PyWeaverError:
                for entry in batch:
                    _write_stderr(entry)
            except BaseException:
                for entry in batch:
                    _write_stderr(entry)
                raise


class SpanShipper:
    """Buffers finished spans and ships them to the envelope in batches, as plain dicts
    (``span_to_dict``, done here at shipping time rather than when each span ends:
    :meth:`processor` hands spans over as they are). Spans that cannot be shipped are
    dropped: tracing is best effort."""

    def __init__(self) -> None:
        self._pending: deque[Any] = deque(maxlen=_MAX_PENDING_SPANS)
        self._wake = anyio.Event()

    def sink(self, span: Any) -> None:
        """A finished span: a ``ReadableSpan``, or a span dict already."""
        # Called in whatever thread ended the span; deque.append is thread-safe.
        self._pending.append(span)

    def processor(self) -> Any:
        """The span processor feeding :meth:`sink` (loads the OpenTelemetry SDK)."""
        from pyweaver._runtime._tracing_sdk import HandOffSpanProcessor

        return HandOffSpanProcessor(self.sink)

    async def run(self, control: call.Client) -> None:
        try:
            while True:
                await anyio.sleep(_LOG_INTERVAL)
                await self._flush(control)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self._flush(control)

    async def _flush(self, control: call.Client) -> None:
        if not self._pending:
            return
        from pyweaver._runtime._tracing_sdk import span_to_dict

        while self._pending:
            taken = [self._pending.popleft() for _ in range(min(len(self._pending), 512))]
            batch = [span if type(span) is dict else span_to_dict(span) for span in taken]
            try:
                await control.call(m.TRACE_SPANS.key, m.encode(m.TraceSpans(spans=batch)))
            except PyWeaverError:
                return


def _write_stderr(entry: LogEntry) -> None:
    # The envelope turns such a line back into the entry (see LOG_LINE_PREFIX).
    try:
        sys.stderr.write(m.LOG_LINE_PREFIX + format_json(entry) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
