"""OTLP export of a deployment's spans, and the standard ``OTEL_*`` variables a deployer
honours.

Where spans are exported from: the **deployer process**. Every weavelet already ships
its finished spans to the deployer (which keeps them in the trace store), so the
deployer converts each span dict back into an OpenTelemetry ``ReadableSpan`` and hands
it to the SDK's ``BatchSpanProcessor`` in front of ``opentelemetry-exporter-otlp-proto-http``'s
``OTLPSpanExporter``. Compared with an exporter in every weavelet this means one
exporter, one connection and one background thread per deployment instead of one per
process; weavelets need neither the exporter package nor network access to the
collector; the OTLP settings live in one place; and the trace store and the collector
see exactly the same spans. The cost is one more hop (weavelet → deployer) that the
spans take anyway.

The exporter runs in the processor's own thread (the OTLP exporter blocks), with the
SDK's bounded queue: when the collector is slow or down, spans are dropped, never
the deployment slowed. :class:`OtlpExport` owns that processor; closing it flushes.

Variables (see https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):

* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (a full URL) or ``OTEL_EXPORTER_OTLP_ENDPOINT``
  (a base URL, ``/v1/traces`` added) turn export on when ``[telemetry] otlp_endpoint``
  is not set; ``OTEL_EXPORTER_OTLP_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``,
  ``_CERTIFICATE`` are read by the exporter itself;
* ``OTEL_SERVICE_NAME`` replaces the app name as the exported ``service.name``;
* ``OTEL_TRACES_SAMPLER`` (``always_on``, ``always_off``, ``traceidratio``,
  ``parentbased_*`` of those) with ``OTEL_TRACES_SAMPLER_ARG`` give the sample ratio
  when neither ``--trace`` nor ``[telemetry]`` does (pyweaver's sampling is always
  parent-based).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from pyweaver._errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["OtlpExport", "otlp_traces_endpoint", "sampler_ratio_from_env", "to_readable_span"]

_TRACES_PATH: Final = "/v1/traces"


def otlp_traces_endpoint(configured: str, environ: Mapping[str, str]) -> str:
    """The URL to POST traces to, or "" when OTLP export is off: ``configured``
    (``[telemetry] otlp_endpoint``; ``/v1/traces`` added when it has no path), else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` +
    ``/v1/traces``."""
    if configured:
        if urlsplit(configured).path in ("", "/"):
            return configured.rstrip("/") + _TRACES_PATH
        return configured
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + _TRACES_PATH
    return ""


def sampler_ratio_from_env(environ: Mapping[str, str]) -> float | None:
    """The sample ratio ``OTEL_TRACES_SAMPLER``/``_ARG`` ask for, or None when unset.
    Samplers pyweaver cannot honour (``jaeger_remote``, ``xray``...) are a ConfigError."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not sampler:
        return None
    name = sampler.removeprefix("parentbased_")
    if name == "always_on":
        return 1.0
    if name == "always_off":
        return 0.0
    if name == "traceidratio":
        arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            ratio = float(arg) if arg else 1.0
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg!r}: expected a ratio from 0 to 1")
        return ratio
    raise ConfigError(
        f"OTEL_TRACES_SAMPLER={sampler!r}: pyweaver understands always_on, always_off, "
        "traceidratio and their parentbased_ forms"
    )


class _Resources:
    """One ``Resource`` per distinct resource dict (the OTLP encoder groups spans by it)."""

    def __init__(self, service_name: str) -> None:
        self.service_name = service_name
        self._cache: dict[tuple[tuple[str, Any], ...], Resource] = {}

    def get(self, attributes: Mapping[str, Any]) -> Resource:
        key = tuple(sorted((k, str(v)) for k, v in attributes.items()))
        resource = self._cache.get(key)
        if resource is None:
            from opentelemetry.sdk.resources import Resource

            plain = dict(attributes)
            if self.service_name:
                plain["service.name"] = self.service_name
            replica = plain.get("pyweaver.replica")
            if replica:  # the replica id logs and metrics carry, not the SDK's random one
                plain["service.instance.id"] = replica
            resource = self._cache[key] = Resource(plain)
        return resource


def _attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k): tuple(v) if isinstance(v, list) else v
        for k, v in value.items()
        if isinstance(v, (str, bool, int, float, list))
    }


def _description(span: Mapping[str, Any]) -> str | None:
    return str(span.get("status_message") or "") or None


def to_readable_span(span: Mapping[str, Any], resources: _Resources) -> ReadableSpan:
    """A span dict (``span_to_dict``'s) as the SDK's ``ReadableSpan``."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = int(str(span.get("trace_id") or "0"), 16)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(trace_id, int(str(span.get("span_id") or "0"), 16), False, sampled)
    parent_id = str(span.get("parent_span_id") or "")
    parent = (
        SpanContext(trace_id, int(parent_id, 16), bool(span.get("parent_is_remote")), sampled)
        if parent_id
        else None
    )
    status = {"ok": StatusCode.OK, "error": StatusCode.ERROR}.get(
        str(span.get("status", "")), StatusCode.UNSET
    )
    kind = {
        "server": SpanKind.SERVER,
        "client": SpanKind.CLIENT,
        "producer": SpanKind.PRODUCER,
        "consumer": SpanKind.CONSUMER,
    }.get(str(span.get("kind", "")), SpanKind.INTERNAL)
    return ReadableSpan(
        name=str(span.get("name", "")),
        context=context,
        parent=parent,
        resource=resources.get(span.get("resource") or {}),
        attributes=_attributes(span.get("attributes")),
        events=[
            Event(
                str(event.get("name", "")),
                _attributes(event.get("attributes")),
                int(event.get("time_ns", 0)),
            )
            for event in span.get("events") or ()
        ],
        links=[
            Link(
                SpanContext(
                    int(str(link.get("trace_id") or "0"), 16),
                    int(str(link.get("span_id") or "0"), 16),
                    True,
                ),
                _attributes(link.get("attributes")),
            )
            for link in span.get("links") or ()
        ],
        kind=kind,
        status=Status(status, _description(span) if status is StatusCode.ERROR else None),
        start_time=int(span.get("start_ns", 0)),
        end_time=int(span.get("end_ns", 0)),
        instrumentation_scope=InstrumentationScope(str(span.get("scope") or "pyweaver")),
    )


class OtlpExport:
    """Sends span dicts to an OTLP/HTTP collector in the background; a callable span
    sink. ``close()`` flushes what is queued (bounded by the exporter's timeout).

    ``exporter`` replaces the OTLP exporter (tests); ``service_name`` (e.g.
    ``OTEL_SERVICE_NAME``), when not empty, replaces each span's ``service.name``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        service_name: str = "",
        exporter: SpanExporter | None = None,
        schedule_delay_millis: int = 1000,
    ) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if exporter is None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise ConfigError(
                    f"OTLP export to {endpoint} needs the OTLP exporter: "
                    "pip install 'pyweaver[otlp]'"
                ) from exc
            exporter = OTLPSpanExporter(endpoint=endpoint)
        self.endpoint = endpoint
        self._resources = _Resources(service_name)
        self._processor: SpanProcessor = BatchSpanProcessor(
            exporter, schedule_delay_millis=schedule_delay_millis
        )

    def __call__(self, spans: Sequence[dict[str, Any]]) -> None:
        for span in spans:
            try:
                readable = to_readable_span(span, self._resources)
            except (TypeError, ValueError):
                continue  # a malformed span is dropped, as a torn line is in the store
            self._processor.on_end(readable)

    def close(self) -> None:
        self._processor.shutdown()
