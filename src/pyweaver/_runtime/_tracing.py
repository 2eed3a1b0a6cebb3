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
(``Tracer``, ``Span``, context), so any exporter or processor can be plugged in.

Semantics follow Service Weaver: component stubs never start a root trace. A stub's
span (``internal`` for a local call, ``client`` for a remote one, ``server`` on the
callee) is created only when the caller already is inside a valid span; roots are
started by :func:`pyweaver.instrument_handler` or by user code
(``start_span(..., require_parent=False)``).

Finished spans leave the process as plain, CBOR-friendly dicts (:func:`span_to_dict`)
through :class:`DictSpanProcessor`, which hands each one to a callback; the weavelet
buffers them and ships batches to the envelope. :class:`InMemorySpanCollector` is
that callback's in-memory fake for tests.

The trace context crosses a component call as ``(trace_id: bytes[16], span_id:
bytes[8], flags: int)``: :func:`current_span_context` on the caller,
:func:`attach_remote_context` on the callee. Across HTTP it travels as W3C
``traceparent``/``tracestate`` headers: :func:`inject_headers` on the client,
:func:`start_span_from_headers` on the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from pyweaver._runtime import _metrics

__all__ = [
    "TRACING",
    "DictSpanProcessor",
    "InMemorySpanCollector",
    "SpanKind",
    "TraceContext",
    "attach_remote_context",
    "current_span_context",
    "disable_tracing",
    "enable_tracing",
    "inject_headers",
    "span_to_dict",
    "start_span",
    "start_span_from_headers",
    "tracing_enabled",
]

#: ``(trace_id, span_id, trace_flags)`` as carried in a call request header.
TraceContext = tuple[bytes, bytes, int]

SpanSink = Callable[[dict[str, Any]], None]


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


def _set_call_tracing(enabled: bool) -> None:
    # Imported here: the call protocol is not needed to import pyweaver (and costs
    # start-up time), only to switch its context propagation.
    from pyweaver import call

    call.enable_tracing(enabled)


def tracing_enabled() -> bool:
    """Whether pyweaver creates spans in this process."""
    return TRACING.on


def enable_tracing(
    export: SpanProcessor | SpanExporter | SpanSink | None = None,
    *,
    sample_ratio: float = 1.0,
    service_name: str = "pyweaver",
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Turn tracing on with a fresh SDK ``TracerProvider`` and return it.

    ``export`` says where finished spans go: a ``SpanProcessor`` is used as is; a
    ``SpanExporter`` gets a ``BatchSpanProcessor`` (a background thread, the
    standard OpenTelemetry way); a plain callable receives every finished span as a
    dict (see :func:`span_to_dict`) synchronously, in the thread that ended it;
    ``None`` keeps spans (so trace ids appear in logs and propagate) but exports
    nothing.

    ``sample_ratio`` applies to new roots; children follow their parent's decision.

    With ``set_global`` (the default) the provider also becomes OpenTelemetry's
    global one, so user code calling ``opentelemetry.trace.get_tracer`` joins the
    same traces; OpenTelemetry allows that only once per process, so a later call
    replaces pyweaver's provider but leaves the global one as it was.

    Calling it again replaces (and shuts down) the previous pyweaver provider.
    """
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in [0, 1], got {sample_ratio!r}")
    resource = Resource.create({"service.name": service_name, **(resource_attributes or {})})
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    if isinstance(export, SpanProcessor):
        provider.add_span_processor(export)
    elif isinstance(export, SpanExporter):
        provider.add_span_processor(BatchSpanProcessor(export))
    elif export is not None:
        provider.add_span_processor(DictSpanProcessor(export))

    previous = _state.provider
    _state.provider = provider
    _state.tracer = provider.get_tracer("pyweaver")
    TRACING.on = True
    _metrics.stop_countdowns()  # so local stubs take their traced path at once
    _set_call_tracing(True)  # carry span contexts on remote calls too
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    if previous is not None:
        previous.shutdown()
    return provider


def disable_tracing() -> None:
    """Turn tracing off, flushing and shutting down pyweaver's provider."""
    TRACING.on = False
    _set_call_tracing(False)
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
    """The current span's ``(trace_id, span_id, flags)`` for a request header, or
    ``None`` when tracing is off or there is no valid span."""
    if not TRACING.on:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return (
        span_context.trace_id.to_bytes(16, "big"),
        span_context.span_id.to_bytes(8, "big"),
        int(span_context.trace_flags),
    )


def attach_remote_context(
    trace_id: bytes, span_id: bytes, flags: int
) -> AbstractContextManager[None]:
    """Make a caller's span (received in a request header) the current parent for
    the body, so a ``start_span(..., SpanKind.SERVER)`` inside continues its trace.

    A no-op with tracing off or an invalid context.
    """
    if not TRACING.on:
        return _NO_CONTEXT
    span_context = SpanContext(
        trace_id=int.from_bytes(trace_id, "big"),
        span_id=int.from_bytes(span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(flags & 0xFF),
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


# -- export -------------------------------------------------------------------------

_KIND_NAMES: Final = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}


def _plain_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry attribute values are primitives or sequences of primitives
    # (often tuples); CBOR and JSON want lists.
    if not attributes:
        return {}
    return {
        key: list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        for key, value in attributes.items()
    }


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain data (str/int/bool/float/list/dict), ids in hex.

    Keys: ``name, trace_id (32 hex), span_id (16 hex), parent_span_id ("" for a
    root), parent_is_remote, kind ("internal"|"server"|"client"|"producer"|
    "consumer"), start_ns, end_ns, attributes, status ("unset"|"ok"|"error"),
    status_message, events [{name, time_ns, attributes}], links [{trace_id,
    span_id, attributes}], resource {key: value}, scope``.
    """
    span_context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(span_context.trace_id, "032x") if span_context else "",
        "span_id": format(span_context.span_id, "016x") if span_context else "",
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "parent_is_remote": bool(parent and parent.is_remote),
        "kind": _KIND_NAMES.get(span.kind, "internal"),
        "start_ns": span.start_time or 0,
        "end_ns": span.end_time or 0,
        "attributes": _plain_attributes(span.attributes),
        "status": span.status.status_code.name.lower(),
        "status_message": span.status.description or "",
        "events": [
            {
                "name": event.name,
                "time_ns": event.timestamp,
                "attributes": _plain_attributes(event.attributes),
            }
            for event in span.events
        ],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": _plain_attributes(link.attributes),
            }
            for link in span.links
        ],
        "resource": _plain_attributes(span.resource.attributes),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
    }


class DictSpanProcessor(SpanProcessor):
    """Hands every finished, sampled span to ``sink`` as a dict (:func:`span_to_dict`).

    Runs synchronously in the thread that ends the span, so the sink must be quick
    (append to a buffer); the weavelet's own task ships the buffer.
    """

    def __init__(self, sink: SpanSink) -> None:
        self._sink = sink

    def on_end(self, span: ReadableSpan) -> None:
        self._sink(span_to_dict(span))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


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
