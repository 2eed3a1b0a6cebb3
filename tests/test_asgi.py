"""instrument_handler: HTTP metrics and server spans around a Starlette app, served
through httpx's ASGI transport on both anyio backends; lifespan and websocket scopes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pyweaver._net import Message, Scope
from pyweaver._runtime._asgi import _RootSampler, instrument_handler
from pyweaver._runtime._metrics import snapshot
from pyweaver._runtime._tracing import (
    InMemorySpanCollector,
    disable_tracing,
    enable_tracing,
    start_span,
)

_labels = itertools.count()


def fresh_label() -> str:
    return f"test-asgi-{next(_labels)}"


def metric(name: str, **labels: str) -> dict[str, Any] | None:
    for sample in snapshot():
        if sample["name"] == name and sample["labels"] == labels:
            return sample
    return None


async def echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(body or b"hello")


async def missing(request: Request) -> Response:
    return PlainTextResponse("no such thing", status_code=404)


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def traced(request: Request) -> Response:
    with start_span("app.Inner.work"):
        return PlainTextResponse("ok")


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/missing", missing),
        Route("/boom", boom),
        Route("/traced", traced),
    ]
)


def client_for(label: str, *, trace_interval: float = 0.0) -> httpx.AsyncClient:
    app = instrument_handler(label, APP, trace_interval=trace_interval)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def spans() -> Iterator[InMemorySpanCollector]:
    collector = InMemorySpanCollector()
    enable_tracing(collector, set_global=False)
    try:
        yield collector
    finally:
        disable_tracing()


@pytest.mark.anyio
async def test_requests_are_counted_timed_and_sized() -> None:
    label = fresh_label()
    async with client_for(label) as client:
        assert (await client.get("/echo")).text == "hello"
        response = await client.post("/echo", content=b"x" * 1000)
        assert response.content == b"x" * 1000
    labels = {"label": label, "host": "testserver"}
    count = metric("serviceweaver_http_request_count", **labels)
    assert count is not None and count["value"] == 2
    latency = metric("serviceweaver_http_request_latency_micros", **labels)
    assert latency is not None and latency["count"] == 2
    received = metric("serviceweaver_http_request_bytes_received", **labels)
    assert received is not None and received["count"] == 2
    assert received["sum"] > 1000  # the body plus the request line and headers
    returned = metric("serviceweaver_http_request_bytes_returned", **labels)
    assert returned is not None and returned["sum"] > 1000 + len("hello")
    assert not [
        s
        for s in snapshot()
        if s["name"] == "serviceweaver_http_error_count" and s["labels"]["label"] == label
    ]


@pytest.mark.anyio
async def test_errors_are_counted_by_code() -> None:
    label = fresh_label()
    async with client_for(label) as client:
        assert (await client.get("/missing")).status_code == 404
        assert (await client.get("/missing")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/echo")).status_code == 200
    labels = {"label": label, "host": "testserver"}
    not_found = metric("serviceweaver_http_error_count", **labels, code="404")
    server_error = metric("serviceweaver_http_error_count", **labels, code="500")
    assert not_found is not None and not_found["value"] == 2
    assert server_error is not None and server_error["value"] == 1
    count = metric("serviceweaver_http_request_count", **labels)
    assert count is not None and count["value"] == 4


@pytest.mark.anyio
async def test_an_exception_before_the_response_counts_as_500() -> None:
    async def raw(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("no response")

    label = fresh_label()
    transport = httpx.ASGITransport(app=instrument_handler(label, raw))
    async with httpx.AsyncClient(transport=transport, base_url="http://h") as client:
        with pytest.raises(ValueError, match="no response"):
            await client.get("/")
    errors = metric("serviceweaver_http_error_count", label=label, host="h", code="500")
    assert errors is not None and errors["value"] == 1


@pytest.mark.anyio
async def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen: list[str] = []

    async def raw(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": f"{scope['type']}.sent"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "never"}

    async def send(message: Message) -> None:
        sent.append(message)

    label = fresh_label()
    app = instrument_handler(label, raw)
    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    websocket_scope = {"type": "websocket", "headers": [(b"host", b"ws.example")], "path": "/ws"}
    await app(websocket_scope, receive, send)
    assert seen == ["lifespan", "websocket"]
    assert sent == [{"type": "lifespan.sent"}, {"type": "websocket.sent"}]
    count = metric("serviceweaver_http_request_count", label=label, host="ws.example")
    assert count is not None and count["value"] == 1  # websocket: counted only
    assert (
        metric("serviceweaver_http_request_latency_micros", label=label, host="ws.example") is None
    )


@pytest.mark.anyio
async def test_requests_start_server_spans(spans: InMemorySpanCollector) -> None:
    label = fresh_label()
    async with client_for(label) as client:
        await client.get("/traced?x=1")
        await client.get("/boom")
    inner, server, failed = spans.spans
    assert server["name"] == label and server["kind"] == "server"
    assert server["parent_span_id"] == ""
    assert server["attributes"]["http.request.method"] == "GET"
    assert server["attributes"]["url.path"] == "/traced"
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["attributes"]["server.address"] == "testserver"
    assert server["status"] == "unset"
    assert inner["name"] == "app.Inner.work"
    assert inner["parent_span_id"] == server["span_id"]  # the app's spans nest under it
    assert failed["attributes"]["http.response.status_code"] == 500
    assert failed["status"] == "error"


@pytest.mark.anyio
async def test_a_traceparent_is_continued(spans: InMemorySpanCollector) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    label = fresh_label()
    # Even a long trace interval does not skip requests that carry a trace.
    async with client_for(label, trace_interval=3600) as client:
        for _ in range(2):
            await client.get("/echo", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert len(spans.spans) == 2
    for span in spans.spans:
        assert span["trace_id"] == trace_id
        assert span["parent_span_id"] == parent_id
        assert span["parent_is_remote"] is True


@pytest.mark.anyio
async def test_new_traces_are_paced(spans: InMemorySpanCollector) -> None:
    async with client_for(fresh_label(), trace_interval=3600) as client:
        for _ in range(3):
            await client.get("/echo")
    assert len(spans.spans) == 1


def test_root_sampler() -> None:
    every = _RootSampler(0)
    assert all(every.should_trace() for _ in range(5))
    paced = _RootSampler(3600)
    assert paced.should_trace()
    assert not paced.should_trace()
