"""Tracing: the one switch that decides whether pyweaver traces, and the helpers the
component stubs, the call server and :func:`pyweaver.instrument_handler` use.

Theory of operation
-------------------
Tracing is **off** by default and then costs a single attribute read per call: hot
paths test ``TRACING.on`` (a slot on a module-level object, so ``from ._tracing import
TRACING`` can never capture a stale value) before touching OpenTelemetry at all. The
helpers below test it too, so calling them with tracing off is merely a function call.
Measured on the project's 2-core machine (CPython 3.11): ``if TRACING.on:`` ~1.5 ns
over a bare ``pass``; ``tracing_enabled()`` ~25 ns; ``start_span(name)`` ~45 ns and
``current_span_context()`` ~30 ns with tracing off.

:func:`enable_tracing` (called by the deployer's weavelet, or by a user) builds an
OpenTelemetry SDK ``TracerProvider`` with a parent-based ratio sampler and an export
path, and turns the switch on. Everything else uses only the OpenTelemetry *API*
(``Tracer``, ``Span``, context), so any exporter or processor can be plugged in. The SDK
itself is imported by :func:`enable_tracing`, from :mod:`._tracing_sdk`: ``import
pyweaver`` loads only the API.

Semantics follow Service Weaver: component stubs never start a root trace. A stub's
span (``internal`` for a local call, ``client`` for a remote one, ``server`` on the
callee) is created only when the caller already is inside a valid span; roots are
started by :func:`pyweaver.instrument_handler` or by user code
(``start_span(..., require_parent=False)``).

Finished spans leave the process as plain, CBOR-friendly dicts (see
:mod:`._tracing_sdk`), handed to a callback; the weavelet buffers them and ships
batches to the envelope. :class:`InMemorySpanCollector` is that callback's in-memory
fake for tests.

The trace context crosses a component call as the call protocol's
:class:`~pyweaver.call.TraceContext` (trace id, span id, flags, tracestate):
:func:`current_span_context` on the caller, :func:`attach_remote_context` on the
callee. Across HTTP it travels as W3C
``traceparent``/``tracestate`` headers: :func:`inject_headers` on the client,
:func:`start_span_from_headers` on the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from pyweaver import call
from pyweaver._runtime import _metrics
from pyweaver.call import TraceContext

if TYPE_CHECKING:  # the SDK loads when tracing is switched on, not with pyweaver
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from pyweaver._runtime._tracing_sdk import SpanSink

__all__ = [
    "TRACING",
    "InMemorySpanCollector",
    "SpanKind",
    "TraceContext",
    "attach_remote_context",
    "current_span_context",
    "disable_tracing",
    "enable_tracing",
    "inject_headers",
    "start_span",
    "start_span_from_headers",
    "tracing_enabled",
]


class _Switch:
    """The process-wide tracing switch. Only this module flips it."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False

    def __repr__(self) -> str:
        return f"<pyweaver tracing {'on' if self.on else 'off'}>"


#: Hot paths test ``TRACING.on``; everything else may call :func:`tracing_enabled`.
TRACING: Final = _Switch()

# Returned by start_span when no span is made: yields the invalid span, on which
# set_attribute/record_exception are no-ops, so callers never need a None check.
_NO_SPAN: Final[AbstractContextManager[Span]] = contextlib.nullcontext(trace.INVALID_SPAN)
_NO_CONTEXT: Final[AbstractContextManager[None]] = contextlib.nullcontext()
_PROPAGATOR: Final = TraceContextTextMapPropagator()


class _State:
    __slots__ = ("provider", "tracer")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()


_state = _State()


def tracing_enabled() -> bool:
    """Whether pyweaver creates spans in this process."""
    return TRACING.on


def enable_tracing(
    export: SpanProcessor | SpanExporter | SpanSink | None = None,
    *,
    sample_ratio: float = 1.0,
    sample_rate: float | None = None,
    service_name: str = "pyweaver",
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Turn tracing on with a fresh SDK ``TracerProvider`` and return it.

    ``export`` says where finished spans go: a ``SpanProcessor`` is used as is; a
    ``SpanExporter`` gets a ``BatchSpanProcessor`` (a background thread, the
    standard OpenTelemetry way); a plain callable receives every finished span as a
    dict (see :func:`._tracing_sdk.span_to_dict`) synchronously, in the thread that
    ended it; ``None`` keeps spans (so trace ids appear in logs and propagate) but
    exports nothing.

    Sampling is decided where a trace starts (its root span): ``sample_ratio`` of
    new traces are recorded, and of those at most ``sample_rate`` per second in this
    process (``None``: no limit). Every other span follows its parent's decision,
    which travels with the trace context to other processes, so a recorded trace is
    complete (see :class:`._tracing_sdk.RootSampler`).

    With ``set_global`` (the default) the provider also becomes OpenTelemetry's
    global one, so user code calling ``opentelemetry.trace.get_tracer`` joins the
    same traces; OpenTelemetry allows that only once per process, so a later call
    replaces pyweaver's provider but leaves the global one as it was.

    Calling it again replaces (and shuts down) the previous pyweaver provider.
    """
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in [0, 1], got {sample_ratio!r}")
    if sample_rate is not None and not sample_rate > 0:
        raise ValueError(f"sample_rate must be above 0, got {sample_rate!r}")
    from pyweaver._runtime import _tracing_sdk

    provider = _tracing_sdk.tracer_provider(
        export,
        sample_ratio=sample_ratio,
        sample_rate=sample_rate,
        service_name=service_name,
        resource_attributes=resource_attributes,
    )

    previous = _state.provider
    _state.provider = provider
    _state.tracer = provider.get_tracer("pyweaver")
    TRACING.on = True
    _metrics.stop_countdowns()  # so local stubs take their traced path at once
    call.enable_tracing(True)  # carry span contexts on remote calls too
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    if previous is not None:
        previous.shutdown()
    return provider


def disable_tracing() -> None:
    """Turn tracing off, flushing and shutting down pyweaver's provider."""
    TRACING.on = False
    call.enable_tracing(False)
    provider, _state.provider = _state.provider, None
    _state.tracer = trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


def start_span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    *,
    require_parent: bool = True,
) -> AbstractContextManager[Span]:
    """A context manager running its body inside a new current span.

    With tracing off, or with ``require_parent`` and no valid span in the current
    context, it makes no span and yields the invalid (no-op) span. Exceptions
    (not cancellation) escaping the body are recorded and set the span's status
    to error.
    """
    if not TRACING.on:
        return _NO_SPAN
    if require_parent and not trace.get_current_span().get_span_context().is_valid:
        return _NO_SPAN
    return _state.tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def start_span_from_headers(
    name: str,
    headers: Mapping[str, str],
    kind: SpanKind = SpanKind.SERVER,
    attributes: Attributes = None,
) -> AbstractContextManager[Span]:
    """Like :func:`start_span`, continuing the trace of a W3C ``traceparent``
    (and ``tracestate``) in ``headers`` (lower-case names) when there is one, else
    starting a new root."""
    if not TRACING.on:
        return _NO_SPAN
    parent = _PROPAGATOR.extract(headers)
    return _state.tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    )


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add the current span's W3C ``traceparent``/``tracestate`` to outgoing HTTP
    request headers (no-op with tracing off or no valid span)."""
    if TRACING.on:
        _PROPAGATOR.inject(headers)


def current_span_context() -> TraceContext | None:
    """The current span's context for a request header, or ``None`` when tracing is
    off or there is no valid span."""
    if not TRACING.on:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return TraceContext(
        span_context.trace_id.to_bytes(16, "big"),
        span_context.span_id.to_bytes(8, "big"),
        int(span_context.trace_flags),
        span_context.trace_state.to_header() if span_context.trace_state else "",
    )


def attach_remote_context(received: TraceContext) -> AbstractContextManager[None]:
    """Make a caller's span (received in a request header) the current parent for
    the body, so a ``start_span(..., SpanKind.SERVER)`` inside continues its trace.

    A no-op with tracing off or an invalid context.
    """
    if not TRACING.on:
        return _NO_CONTEXT
    span_context = SpanContext(
        trace_id=int.from_bytes(received.trace_id, "big"),
        span_id=int.from_bytes(received.span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(received.flags & 0xFF),
        trace_state=TraceState.from_header([received.state]) if received.state else None,
    )
    if not span_context.is_valid:
        return _NO_CONTEXT
    return _attached(NonRecordingSpan(span_context))


@contextlib.contextmanager
def _attached(span: Span) -> Iterator[None]:
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


class InMemorySpanCollector:
    """A span sink that keeps every span dict in memory (the test fake)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    def __call__(self, span: dict[str, Any]) -> None:
        self.spans.append(span)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name]

    def clear(self) -> None:
        self.spans.clear()
