"""``weaver.instrument_handler``: ASGI middleware recording Service Weaver's HTTP
metrics and tracing requests.

Per HTTP request, labelled with the handler's ``label`` and the request's ``host``:

- ``serviceweaver_http_request_count`` (counter)
- ``serviceweaver_http_error_count`` (counter; 4xx and 5xx replies, also labelled
  with ``code``; an exception before the response started counts as a 500)
- ``serviceweaver_http_request_latency_micros`` (histogram, until the app returns)
- ``serviceweaver_http_request_bytes_received`` / ``_bytes_returned`` (histograms;
  estimates of the bytes on the wire, as Service Weaver computes them: request
  line or status line, header names and values, and the body)

A websocket connection is only counted. Lifespan (and any other) scopes pass
through untouched.

With tracing on (:mod:`pyweaver._runtime._tracing`), a request carrying a W3C
``traceparent`` continues that trace in a server span named ``label``; a request
without one starts a new trace. Whether a new trace is recorded is the tracer's
sampler's decision alone (``--trace``, ``[telemetry] sample_ratio`` and
``sample_rate``: see docs/telemetry.md), so ``--trace 1`` records every request.

(Until the sampler knew rates, this middleware paced new traces itself to about one
per second, as Service Weaver's does, whatever ``--trace`` said: 2,500 requests gave
13 traces. That pacing is now opt-in per handler, ``trace_interval``; the deployment-wide
``sample_rate`` is the usual way to cap tracing.)
"""

from __future__ import annotations

import http
import random
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode

from pyweaver._net import ASGIApp, Message, Receive, Scope, Send
from pyweaver._runtime import _tracing
from pyweaver._runtime._metrics import GENERATED_BOUNDS, Counter, Histogram
from pyweaver._runtime._tracing import TRACING

__all__ = ["ASGIApp", "instrument_handler"]


_LABELS: Final = ("label", "host")
_request_count: Final = Counter(
    "serviceweaver_http_request_count", "Count of HTTP requests received", _LABELS
)
_error_count: Final = Counter(
    "serviceweaver_http_error_count",
    "Count of HTTP replies with a 4XX or 5XX status code",
    (*_LABELS, "code"),
)
_latency: Final = Histogram(
    "serviceweaver_http_request_latency_micros",
    "Duration, in microseconds, of HTTP request execution",
    GENERATED_BOUNDS,
    _LABELS,
)
_bytes_received: Final = Histogram(
    "serviceweaver_http_request_bytes_received",
    "Number of bytes received by HTTP request handlers",
    GENERATED_BOUNDS,
    _LABELS,
)
_bytes_returned: Final = Histogram(
    "serviceweaver_http_request_bytes_returned",
    "Number of bytes returned by HTTP request handlers",
    GENERATED_BOUNDS,
    _LABELS,
)


class _RootSampler:
    """Allows a new trace about once per interval (Service Weaver's traceSampler)."""

    __slots__ = ("_interval", "_next", "_random")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self._random = random.Random()

    def should_trace(self) -> bool:
        if self._interval <= 0:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + 2 * self._random.random() * self._interval
        return True


class _Exchange:
    """What the middleware observes of one request/response exchange."""

    __slots__ = ("received", "returned", "status")

    def __init__(self) -> None:
        self.status = 0
        self.received = 0
        self.returned = 0


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return bytes(value).decode("latin-1")
    server = scope.get("server")
    if server:
        host, port = server
        return f"{host}:{port}" if port is not None else str(host)
    return ""


def _headers_size(headers: Any) -> int:
    return sum(len(name) + len(value) for name, value in headers or ())


def _request_head_size(scope: Scope) -> int:
    # Method, protocol, path, query and headers, as Service Weaver estimates them.
    return (
        len(scope.get("method", ""))
        + len("HTTP/")
        + len(scope.get("http_version", "1.1"))
        + len(scope.get("raw_path") or scope.get("path", "").encode())
        + len(scope.get("query_string", b""))
        + _headers_size(scope.get("headers"))
    )


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def instrument_handler(label: str, app: ASGIApp, *, trace_interval: float = 0.0) -> ASGIApp:
    """Wrap ``app`` so its HTTP requests are counted, timed, sized and traced.

    Every request without a ``traceparent`` starts a new trace that the tracer's
    sampler records or not. ``trace_interval`` (seconds; default ``0``: no pacing)
    additionally lets this handler start a trace only about once per interval
    (Service Weaver's pacing: after a trace, the next after a random 0-2 intervals);
    requests that continue a caller's trace are always traced.
    """
    sampler = _RootSampler(trace_interval)

    async def instrumented(scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        host = _host(scope)
        _request_count.labels(label, host).inc()
        if scope_type == "websocket":
            await app(scope, receive, send)
            return

        exchange = _Exchange()
        http_version = scope.get("http_version", "1.1")

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            message_type = message["type"]
            if message_type == "http.response.start":
                exchange.status = status = int(message["status"])
                exchange.returned += (
                    len("HTTP/")
                    + len(http_version)
                    + 3
                    + len(_reason(status))
                    + _headers_size(message.get("headers"))
                )
            elif message_type == "http.response.body":
                exchange.returned += len(message.get("body", b""))
            await send(message)

        span_manager = _span_for(label, host, scope, sampler)
        start = time.perf_counter_ns()
        try:
            with span_manager as span:
                try:
                    await app(scope, counting_receive, observing_send)
                finally:
                    _finish_span(span, exchange.status)
        except Exception:
            # The server answers 500 when the app fails before responding.
            if exchange.status == 0:
                exchange.status = 500
            raise
        finally:
            _latency.labels(label, host).put((time.perf_counter_ns() - start) // 1000)
            _bytes_received.labels(label, host).put(_request_head_size(scope) + exchange.received)
            _bytes_returned.labels(label, host).put(exchange.returned)
            if 400 <= exchange.status < 600:
                _error_count.labels(label, host, exchange.status).inc()

    return instrumented


_NO_SPAN: Final[AbstractContextManager[Span]] = nullcontext(INVALID_SPAN)


def _span_for(
    label: str, host: str, scope: Scope, sampler: _RootSampler
) -> AbstractContextManager[Span]:
    if not TRACING.on:
        return _NO_SPAN
    headers = {}
    for name, value in scope.get("headers", ()):
        if name in (b"traceparent", b"tracestate"):
            headers[bytes(name).decode("latin-1")] = bytes(value).decode("latin-1")
    if "traceparent" not in headers and not sampler.should_trace():
        return _NO_SPAN
    attributes = {
        "http.request.method": scope.get("method", ""),
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme", "http"),
        "server.address": host,
        "pyweaver.http.label": label,
    }
    return _tracing.start_span_from_headers(label, headers, SpanKind.SERVER, attributes)


def _finish_span(span: Span, status: int) -> None:
    if not span.is_recording() or not status:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR, f"HTTP {status}")
