"""W3C trace context across calls, through the OpenTelemetry API, when tracing is on.

Tracing is off by default and the off path costs one attribute read per call: the
client and server test :data:`state.enabled` before touching OpenTelemetry at all. The
runtime turns it on with :func:`enable_tracing` once it has configured an SDK.
"""

from __future__ import annotations

from typing import Any

from pyweaver.call._wire import TraceContext

__all__ = ["attach", "current", "enable_tracing", "state", "tracing_enabled"]


class _State:
    __slots__ = ("enabled", "get_current_span")

    def __init__(self) -> None:
        self.enabled = False
        self.get_current_span: Any = None  # opentelemetry.trace's, once enabled


state = _State()


def enable_tracing(enabled: bool = True) -> None:
    """Carry the current OpenTelemetry span context on every call (and install the
    received one around every handler). Off by default."""
    if enabled and state.get_current_span is None:
        from opentelemetry import trace

        state.get_current_span = trace.get_current_span
    state.enabled = enabled


def tracing_enabled() -> bool:
    return state.enabled


def current() -> TraceContext | None:
    """The current span's context, or None when there is no valid one."""
    get_current_span = state.get_current_span
    if get_current_span is None:  # never enabled: no span can be current
        return None
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return TraceContext(
        context.trace_id.to_bytes(16, "big"),
        context.span_id.to_bytes(8, "big"),
        int(context.trace_flags),
        context.trace_state.to_header() if context.trace_state else "",
    )


def attach(received: TraceContext) -> None:
    """Make ``received`` the current OpenTelemetry context (the caller runs in a private
    ``contextvars.Context``, so nothing needs detaching)."""
    from opentelemetry import context, trace

    span_context = trace.SpanContext(
        trace_id=int.from_bytes(received.trace_id, "big"),
        span_id=int.from_bytes(received.span_id, "big"),
        is_remote=True,
        trace_flags=trace.TraceFlags(received.flags & 0xFF),
        trace_state=trace.TraceState.from_header([received.state]) if received.state else None,
    )
    if span_context.is_valid:
        context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
