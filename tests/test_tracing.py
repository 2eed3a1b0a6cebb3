"""Tracing: the off switch, span creation rules, propagation between caller and
callee (the call protocol's TraceContext and W3C headers), export as dicts and through OpenTelemetry
processors and exporters, on both anyio backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyweaver import call
from pyweaver._runtime import _tracing
from pyweaver._runtime._tracing import (
    TRACING,
    InMemorySpanCollector,
    SpanKind,
    TraceContext,
    attach_remote_context,
    current_span_context,
    disable_tracing,
    enable_tracing,
    inject_headers,
    start_span,
    start_span_from_headers,
    tracing_enabled,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanCollector]:
    collector = InMemorySpanCollector()
    enable_tracing(collector, service_name="test-app", set_global=False)
    try:
        yield collector
    finally:
        disable_tracing()


def test_off_by_default_and_everything_is_a_no_op() -> None:
    assert not tracing_enabled()
    assert not TRACING.on
    with start_span("x", require_parent=False) as span:
        assert span is trace.INVALID_SPAN
        span.set_attribute("ignored", 1)  # safe on the no-op span
        assert current_span_context() is None
    with attach_remote_context(TraceContext(b"\x01" * 16, b"\x02" * 8, 1)):
        assert current_span_context() is None
    with start_span_from_headers("x", {}) as span:
        assert not span.is_recording()
    headers: dict[str, str] = {}
    inject_headers(headers)
    assert headers == {}


def test_stub_spans_need_a_parent(spans: InMemorySpanCollector) -> None:
    assert tracing_enabled()
    with start_span("app.A.orphan") as span:
        assert not span.is_recording()
    with (
        start_span("root", SpanKind.SERVER, {"k": "v"}, require_parent=False),
        start_span("app.A.child", SpanKind.CLIENT) as child,
    ):
        assert child.is_recording()
    assert [s["name"] for s in spans.spans] == ["app.A.child", "root"]
    child_span, root_span = spans.spans
    assert child_span["trace_id"] == root_span["trace_id"]
    assert child_span["parent_span_id"] == root_span["span_id"]
    assert root_span["parent_span_id"] == ""
    assert child_span["kind"] == "client"
    assert root_span["kind"] == "server"
    assert root_span["attributes"] == {"k": "v"}
    assert root_span["resource"]["service.name"] == "test-app"
    assert root_span["scope"] == "pyweaver"
    assert 0 < root_span["start_ns"] <= child_span["start_ns"] <= child_span["end_ns"]
    assert child_span["end_ns"] <= root_span["end_ns"]


def test_context_crosses_a_call_as_bytes(spans: InMemorySpanCollector) -> None:
    assert current_span_context() is None  # no span yet
    with start_span("caller", require_parent=False) as caller:
        header = current_span_context()
        assert header is not None
        assert isinstance(header, TraceContext)  # what a call request carries
        trace_id, span_id = header.trace_id, header.span_id
        assert len(trace_id) == 16 and len(span_id) == 8
        assert header.flags & 1  # sampled (newer SDKs also set 0x02, random trace id)
        assert header.state == ""
        assert int.from_bytes(span_id, "big") == caller.get_span_context().span_id
    # The callee, elsewhere, with only the header:
    with attach_remote_context(header), start_span("callee", SpanKind.SERVER):
        pass
    callee = spans.named("callee")[0]
    assert callee["trace_id"] == trace_id.hex()
    assert callee["parent_span_id"] == span_id.hex()
    assert callee["parent_is_remote"] is True
    # An invalid header is ignored.
    with attach_remote_context(TraceContext(bytes(16), bytes(8), 1)), start_span("ignored"):
        pass
    assert not spans.named("ignored")


def test_the_trace_context_is_the_call_protocols_with_its_tracestate(
    spans: InMemorySpanCollector,
) -> None:
    assert TraceContext is call.TraceContext  # one shape, owned by the wire
    received = TraceContext(b"\x01" * 16, b"\x02" * 8, 1, "vendor=abc")
    with attach_remote_context(received), start_span("callee", SpanKind.SERVER):
        header = current_span_context()
    assert header is not None
    assert header.trace_id == received.trace_id
    assert header.state == "vendor=abc"
    assert spans.named("callee")[0]["parent_span_id"] == received.span_id.hex()


def test_w3c_headers_round_trip(spans: InMemorySpanCollector) -> None:
    headers: dict[str, str] = {}
    with start_span("client", require_parent=False) as client:
        inject_headers(headers)
    context = client.get_span_context()
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    with start_span_from_headers("server", headers):
        pass
    with start_span_from_headers("new-root", {"traceparent": "garbage"}):
        pass
    server, new_root = spans.named("server")[0], spans.named("new-root")[0]
    assert server["trace_id"] == f"{context.trace_id:032x}"
    assert server["parent_span_id"] == f"{context.span_id:016x}"
    assert server["kind"] == "server"
    assert new_root["parent_span_id"] == ""


def test_exceptions_are_recorded(spans: InMemorySpanCollector) -> None:
    with pytest.raises(KeyError), start_span("failing", require_parent=False):
        raise KeyError("missing")
    (failing,) = spans.spans
    assert failing["status"] == "error"
    assert "KeyError" in failing["status_message"]
    assert [event["name"] for event in failing["events"]] == ["exception"]
    assert failing["events"][0]["attributes"]["exception.type"] == "KeyError"


@pytest.mark.anyio
async def test_cancellation_is_not_an_error(spans: InMemorySpanCollector) -> None:
    with anyio.CancelScope() as scope:
        with start_span("cancelled", require_parent=False):
            scope.cancel()
            await anyio.sleep(1)
    (cancelled,) = spans.spans
    assert cancelled["status"] == "unset"
    assert cancelled["events"] == []


@pytest.mark.anyio
async def test_span_context_follows_tasks(spans: InMemorySpanCollector) -> None:
    seen: list[TraceContext | None] = []

    async def child() -> None:
        await anyio.sleep(0)
        with start_span("in-task"):
            seen.append(current_span_context())

    with start_span("parent", require_parent=False) as parent:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(child)
    assert len(spans.named("in-task")) == 3
    parent_id = f"{parent.get_span_context().span_id:016x}"
    assert all(span["parent_span_id"] == parent_id for span in spans.named("in-task"))
    assert all(header is not None for header in seen)


def test_sample_ratio_zero_propagates_but_records_nothing() -> None:
    collector = InMemorySpanCollector()
    enable_tracing(collector, sample_ratio=0.0, set_global=False)
    try:
        with start_span("unsampled", require_parent=False) as span:
            assert not span.is_recording()
            header = current_span_context()
            assert header is not None and not header.flags & 1  # not sampled
    finally:
        disable_tracing()
    assert collector.spans == []
    with pytest.raises(ValueError, match="sample_ratio"):
        enable_tracing(sample_ratio=2.0, set_global=False)
    assert not tracing_enabled()


def test_exporters_and_processors_plug_in() -> None:
    exporter = InMemorySpanExporter()
    enable_tracing(exporter, set_global=False)  # batched: flushed by disable_tracing
    with start_span("batched", require_parent=False):
        pass
    disable_tracing()
    assert [span.name for span in exporter.get_finished_spans()] == ["batched"]

    direct = InMemorySpanExporter()
    enable_tracing(SimpleSpanProcessor(direct), set_global=False)
    try:
        with start_span("direct", require_parent=False):
            pass
        assert [span.name for span in direct.get_finished_spans()] == ["direct"]
    finally:
        disable_tracing()


def test_enabling_again_replaces_the_provider() -> None:
    first, second = InMemorySpanCollector(), InMemorySpanCollector()
    enable_tracing(first, set_global=False)
    try:
        enable_tracing(second, set_global=False)
        with start_span("after", require_parent=False):
            pass
    finally:
        disable_tracing()
    assert first.spans == []
    assert [span["name"] for span in second.spans] == ["after"]
    assert _tracing._state.provider is None


@pytest.mark.slow
def test_the_global_provider_is_set_once_for_user_code() -> None:
    # In a fresh interpreter: OpenTelemetry's global provider can be set only once.
    script = """
from opentelemetry import trace
from pyweaver._runtime._tracing import InMemorySpanCollector, enable_tracing, start_span
spans = InMemorySpanCollector()
enable_tracing(spans)
with start_span("pyweaver-root", require_parent=False):
    with trace.get_tracer("user").start_as_current_span("user-span"):
        pass
print(",".join(span["name"] for span in spans.spans))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "user-span,pyweaver-root"


@pytest.mark.slow
def test_import_pyweaver_loads_the_opentelemetry_sdk_only_when_tracing_is_switched_on() -> None:
    # In a fresh interpreter: the SDK (providers, samplers, exporters) costs start-up time
    # that an app which never traces should not pay; only the API loads with pyweaver.
    script = """
import sys
import pyweaver
from pyweaver import call
from pyweaver._runtime import _tracing
def sdk(): return sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
print(sdk())
_tracing.enable_tracing(set_global=False)
print("opentelemetry.sdk.trace" in sdk())
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == ["[]", "True"]
