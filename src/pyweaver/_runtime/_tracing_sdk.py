"""The OpenTelemetry SDK side of tracing: the provider pyweaver builds, and where finished
spans go.

Loaded by :func:`pyweaver._runtime._tracing.enable_tracing` and by nothing that
``import pyweaver`` runs: the SDK (providers, samplers, resource detection, processors)
costs start-up time that an app which never traces should not pay, so only the
OpenTelemetry *API* loads with pyweaver.

Finished spans leave the process as plain, CBOR-friendly dicts (:func:`span_to_dict`)
through :class:`DictSpanProcessor`, which hands each one to a callback; the weavelet
buffers them and ships batches to the envelope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

__all__ = [
    "DictSpanProcessor",
    "HandOffSpanProcessor",
    "RootSampler",
    "SpanSink",
    "span_to_dict",
    "tracer_provider",
]


class RootSampler(Sampler):
    """Decides whether a new trace (a root span) is recorded: ``ratio`` of them (by
    trace id, as OpenTelemetry's ``TraceIdRatioBased``), and of those at most ``rate``
    per second in this process (a token bucket holding ``max(1, rate)`` tokens,
    refilled at ``rate`` per second; ``None``: no limit).

    Used as the root of a ``ParentBased`` sampler: a span with a parent (local or
    from another process) follows its parent's decision, so a recorded trace is
    complete across processes, and the limit counts traces, not spans.
    """

    def __init__(
        self,
        ratio: float,
        rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"sample_rate must be above 0, got {rate!r}")
        self._ratio = TraceIdRatioBased(ratio)
        self._rate = rate
        self._capacity = max(1.0, rate or 0.0)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def should_sample(  # noqa: PLR0917 (OpenTelemetry's signature)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._ratio.should_sample(parent_context, trace_id, name, kind, attributes)
        if self._rate is None or result.decision is not Decision.RECORD_AND_SAMPLE:
            return result
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return result
        return SamplingResult(Decision.DROP, None, result.trace_state)

    def get_description(self) -> str:
        return f"RootSampler{{ratio={self._ratio.rate}, rate={self._rate}}}"


SpanSink = Callable[[dict[str, Any]], None]


def tracer_provider(
    export: SpanProcessor | SpanExporter | SpanSink | None,
    *,
    sample_ratio: float,
    sample_rate: float | None = None,
    service_name: str,
    resource_attributes: Mapping[str, str] | None,
) -> TracerProvider:
    """A fresh ``TracerProvider`` with a parent-based :class:`RootSampler`, exporting
    finished spans as :func:`pyweaver._runtime._tracing.enable_tracing` documents."""
    resource = Resource.create({"service.name": service_name, **(resource_attributes or {})})
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(RootSampler(sample_ratio, sample_rate))
    )
    if isinstance(export, SpanProcessor):
        provider.add_span_processor(export)
    elif isinstance(export, SpanExporter):
        provider.add_span_processor(BatchSpanProcessor(export))
    elif export is not None:
        provider.add_span_processor(DictSpanProcessor(export))
    return provider


_KIND_NAMES: Final = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}


def _plain_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry attribute values are primitives or sequences of primitives
    # (often tuples); CBOR and JSON want lists. (Exact type tests, not the slower
    # isinstance(Sequence): this runs for every span.)
    if not attributes:
        return {}
    return {
        key: list(value) if type(value) in (tuple, list) else value
        for key, value in attributes.items()
    }


_resource_cache: dict[int, tuple[Resource, dict[str, Any]]] = {}


def _resource_dict(resource: Resource) -> dict[str, Any]:
    # A provider's spans share one Resource: convert it once (keyed by identity,
    # keeping the object alive so the id stays its own).
    cached = _resource_cache.get(id(resource))
    if cached is None or cached[0] is not resource:
        if len(_resource_cache) > 64:
            _resource_cache.clear()
        cached = _resource_cache[id(resource)] = (resource, _plain_attributes(resource.attributes))
    return dict(cached[1])


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
        "resource": _resource_dict(span.resource),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
    }


class HandOffSpanProcessor(SpanProcessor):
    """Hands every finished, sampled span to ``sink`` as it is (a ``ReadableSpan``,
    immutable once ended), for a sink that converts it later with
    :func:`span_to_dict`: the conversion (~20% of a span's cost) then happens when a
    batch ships, not inside the call that ended the span."""

    def __init__(self, sink: Callable[[Any], None]) -> None:
        self._sink = sink

    def on_end(self, span: ReadableSpan) -> None:
        self._sink(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class DictSpanProcessor(HandOffSpanProcessor):
    """Hands every finished, sampled span to ``sink`` as a dict (:func:`span_to_dict`).

    Runs synchronously in the thread that ends the span, so the sink must be quick
    (append to a buffer); the weavelet's own task ships the buffer.
    """

    def on_end(self, span: ReadableSpan) -> None:
        self._sink(span_to_dict(span))
