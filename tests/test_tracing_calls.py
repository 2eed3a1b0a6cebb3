"""Tracing through component calls: local and remote calls made under a span become
child spans, and a remote call's server span joins the caller's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyweaver import weavertest
from pyweaver._runtime._tracing import (
    InMemorySpanCollector,
    disable_tracing,
    enable_tracing,
    start_span,
)

from .components import Greeter

pytestmark = pytest.mark.anyio


@pytest.fixture
def spans() -> Iterator[InMemorySpanCollector]:
    collector = InMemorySpanCollector()
    enable_tracing(collector, set_global=False)
    try:
        yield collector
    finally:
        disable_tracing()


@pytest.mark.parametrize("mode", ["local", "rpc"])
async def test_calls_under_a_span_are_traced(mode: str, spans: InMemorySpanCollector) -> None:
    async with weavertest.Runner(mode) as app:
        greeter = await app.get(Greeter)
        with start_span("request", require_parent=False):
            assert await greeter.greet("ann") == "Hello, ann!"
        await greeter.greet("untraced")  # no parent span: no spans
    (root,) = spans.named("request")
    greets = spans.named("tests.components.Greeter.greet")
    adds = spans.named("tests.components.Counter.add")
    assert greets and adds
    trace_ids = {span["trace_id"] for span in [root, *greets, *adds]}
    assert trace_ids == {root["trace_id"]}
    if mode == "rpc":
        kinds = sorted(span["kind"] for span in greets)
        assert "client" in kinds and "server" in kinds
        server = next(span for span in greets if span["kind"] == "server")
        assert server["parent_is_remote"]
    else:
        (greet,) = greets
        assert greet["parent_span_id"] == root["span_id"]
