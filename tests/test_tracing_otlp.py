"""OTLP export from the deployer: span dicts (as weavelets ship them) sent with the
OTLP/HTTP exporter to a small in-test collector that decodes the protobuf
ExportTraceServiceRequest; the OTEL_* variables and [telemetry] settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pyweaver._errors import ConfigError
from pyweaver._runtime._tracing import (
    InMemorySpanCollector,
    SpanKind,
    disable_tracing,
    enable_tracing,
    start_span,
)
from pyweaver.contract._config import TelemetryConfig, parse_config
from pyweaver.deployers._otlp import OtlpExport, otlp_traces_endpoint, sampler_ratio_from_env
from pyweaver.deployers.multi._cli import _sample_ratio


class Collector:
    """An OTLP/HTTP traces receiver on 127.0.0.1 (http.server in a thread)."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.requests.append(request)
                received.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every received span."""
        found: list[tuple[dict[str, Any], Any]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, s) for s in scope_spans.spans)
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    thread = threading.Thread(target=collector.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()
        collector.server.server_close()
        thread.join(5)


def recorded_spans() -> list[dict[str, Any]]:
    """Real spans, made as a weavelet makes them, as the dicts it ships."""
    spans = InMemorySpanCollector()
    enable_tracing(
        spans,
        service_name="shop",
        resource_attributes={"pyweaver.group": "main", "pyweaver.replica": "r1"},
        set_global=False,
    )
    try:
        with start_span("frontend", SpanKind.SERVER, require_parent=False):
            with start_span("shop.Cart.add", SpanKind.CLIENT, {"items": 3}):
                pass
            try:
                with start_span("shop.Cart.pay"):
                    raise ValueError("card declined")
            except ValueError:
                pass
    finally:
        disable_tracing()
    return spans.spans


def test_spans_reach_an_otlp_collector(collector: Collector) -> None:
    spans = recorded_spans()
    export = OtlpExport(otlp_traces_endpoint(collector.url, {}), service_name="")
    export(spans)
    export.close()  # flushes
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    received = {span.name: (resource, span) for resource, span in collector.spans()}
    assert set(received) == {"frontend", "shop.Cart.add", "shop.Cart.pay"}
    resource, root = received["frontend"]
    assert resource["service.name"] == "shop"
    assert resource["service.instance.id"] == "r1"
    assert resource["pyweaver.replica"] == "r1"
    by_name = {s["name"]: s for s in spans}
    assert root.trace_id.hex() == by_name["frontend"]["trace_id"]
    assert root.span_id.hex() == by_name["frontend"]["span_id"]
    _, add = received["shop.Cart.add"]
    assert add.parent_span_id == root.span_id
    assert add.kind == add.SPAN_KIND_CLIENT
    assert {a.key: a.value.int_value for a in add.attributes} == {"items": 3}
    assert add.start_time_unix_nano == by_name["shop.Cart.add"]["start_ns"]
    _, pay = received["shop.Cart.pay"]
    assert pay.status.code == pay.status.STATUS_CODE_ERROR
    assert "card declined" in pay.status.message
    assert [event.name for event in pay.events] == ["exception"]


def test_otel_service_name_replaces_the_app_name(collector: Collector) -> None:
    export = OtlpExport(collector.url + "/custom/path", service_name="checkout")
    export(recorded_spans())
    export.close()
    assert set(collector.paths) == {"/custom/path"}
    assert {resource["service.name"] for resource, _ in collector.spans()} == {"checkout"}


def test_the_endpoint_comes_from_the_config_else_the_standard_variables() -> None:
    assert otlp_traces_endpoint("", {}) == ""
    assert otlp_traces_endpoint("http://c:4318", {}) == "http://c:4318/v1/traces"
    assert otlp_traces_endpoint("http://c:4318/", {}) == "http://c:4318/v1/traces"
    assert otlp_traces_endpoint("http://c:4318/x", {}) == "http://c:4318/x"
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318/"}
    assert otlp_traces_endpoint("", base) == "http://b:4318/v1/traces"
    traces = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/t"}
    assert otlp_traces_endpoint("", traces) == "http://t:1/t"
    assert otlp_traces_endpoint("http://c:4318", traces) == "http://c:4318/v1/traces"


def test_otel_traces_sampler() -> None:
    assert sampler_ratio_from_env({}) is None
    assert sampler_ratio_from_env({"OTEL_TRACES_SAMPLER": "always_on"}) == 1.0
    assert sampler_ratio_from_env({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}) == 0.0
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert sampler_ratio_from_env(ratio) == 0.25
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        sampler_ratio_from_env({**ratio, "OTEL_TRACES_SAMPLER_ARG": "2"})
    with pytest.raises(ConfigError, match="jaeger_remote"):
        sampler_ratio_from_env({"OTEL_TRACES_SAMPLER": "jaeger_remote"})


def test_which_sample_ratio_wins() -> None:
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    configured = TelemetryConfig(sample_ratio=0.1)
    assert _sample_ratio(1.0, configured, env) == 1.0  # --trace first
    assert _sample_ratio(None, configured, env) == 0.1  # then [telemetry]
    assert _sample_ratio(None, TelemetryConfig(), env) == 0.5  # then OTEL_TRACES_SAMPLER
    assert _sample_ratio(None, TelemetryConfig(sample_rate=2), {}) == 1.0  # a rate alone
    assert _sample_ratio(None, TelemetryConfig(), {}) == 0.0  # else off


def test_the_telemetry_section() -> None:
    config = parse_config(
        "[telemetry]\n"
        "sample_ratio = 0.5\n"
        "sample_rate = 10\n"
        'otlp_endpoint = "http://127.0.0.1:4318"\n'
        'metrics_address = "127.0.0.1:9464"\n'
    )
    assert config.telemetry == TelemetryConfig(
        sample_ratio=0.5,
        sample_rate=10.0,
        otlp_endpoint="http://127.0.0.1:4318",
        metrics_address="127.0.0.1:9464",
    )
    assert parse_config("").telemetry.effective_ratio() == 0.0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("sample_ratio = 2", "weaver.toml: [telemetry] sample_ratio: expected 0 to 1, got 2"),
        ('sample_ratio = "all"', "[telemetry] sample_ratio: expected a number, got a string"),
        ("sample_rate = 0", "[telemetry] sample_rate: expected traces per second above 0"),
        ('otlp_endpoint = "collector:4318"', '[telemetry] otlp_endpoint: expected "http://'),
        ('metrics_address = "localhost"', "[telemetry] metrics_address:"),
        ("sample = 1", "[telemetry] 'sample': unknown key"),
    ],
)
def test_telemetry_errors_name_file_section_and_key(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"[telemetry]\n{body}\n", path="weaver.toml")
    assert error in str(raised.value)
