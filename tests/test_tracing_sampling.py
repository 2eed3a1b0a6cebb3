"""Trace sampling: a ratio and a rate of new (root) traces, parent-based so that a
recorded trace is complete, and instrument_handler leaving the decision to them (with
``--trace 1`` every request is traced)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.sampling import Decision

from pyweaver._net import Receive, Scope, Send
from pyweaver._runtime._asgi import instrument_handler
from pyweaver._runtime._tracing import (
    InMemorySpanCollector,
    disable_tracing,
    enable_tracing,
    start_span,
)
from pyweaver._runtime._tracing_sdk import RootSampler

_labels = itertools.count()


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    with start_span("app.Inner.work"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture
def every_trace() -> Iterator[InMemorySpanCollector]:
    """Tracing as ``pyweaver multi deploy --trace 1`` sets it up."""
    collector = InMemorySpanCollector()
    enable_tracing(collector, sample_ratio=1.0, set_global=False)
    try:
        yield collector
    finally:
        disable_tracing()


@pytest.mark.anyio
async def test_trace_1_traces_every_request(every_trace: InMemorySpanCollector) -> None:
    # The finding: with --trace 1, 2,500 requests gave 13 traces, because the handler
    # paced new traces to about one per second whatever the sampler said.
    label = f"sampling-{next(_labels)}"
    app = instrument_handler(label, hello)  # the defaults, as apps call it
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(50):
            assert (await client.get("/")).status_code == 200
    roots = every_trace.named(label)
    assert len(roots) == 50
    assert len({span["trace_id"] for span in roots}) == 50
    assert len(every_trace.named("app.Inner.work")) == 50


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decisions(sampler: RootSampler, count: int) -> list[bool]:
    return [
        sampler.should_sample(None, trace_id, "root").decision is Decision.RECORD_AND_SAMPLE
        for trace_id in range(1, count + 1)
    ]


def test_rate_caps_new_traces_per_second() -> None:
    clock = FakeClock()
    sampler = RootSampler(1.0, 2.0, clock=clock)
    assert decisions(sampler, 10) == [True, True] + [False] * 8  # a burst of two
    clock.now += 0.5  # one token back
    assert decisions(sampler, 3) == [True, False, False]
    clock.now += 60  # the bucket holds two at most
    assert decisions(sampler, 3) == [True, True, False]


def test_a_rate_below_one_allows_one_trace_per_period() -> None:
    clock = FakeClock()
    sampler = RootSampler(1.0, 0.1, clock=clock)
    assert decisions(sampler, 3) == [True, False, False]
    clock.now += 5
    assert decisions(sampler, 1) == [False]
    clock.now += 5
    assert decisions(sampler, 1) == [True]


def test_ratio_zero_and_one_and_no_rate() -> None:
    assert decisions(RootSampler(1.0), 100) == [True] * 100
    assert decisions(RootSampler(0.0), 100) == [False] * 100
    with pytest.raises(ValueError, match="above 0"):
        RootSampler(1.0, 0.0)


def test_a_recorded_trace_is_complete_even_past_the_rate() -> None:
    collector = InMemorySpanCollector()
    enable_tracing(collector, sample_ratio=1.0, sample_rate=0.01, set_global=False)
    try:
        for _ in range(3):
            with start_span("root", require_parent=False), start_span("child"):
                for _ in range(5):
                    with start_span("grandchild"):
                        pass
    finally:
        disable_tracing()
    # One new trace per 100 s: the first is recorded with all of its spans, the
    # others not at all (their children follow the root's decision).
    assert len(collector.named("root")) == 1
    assert len(collector.named("child")) == 1
    assert len(collector.named("grandchild")) == 5
    assert len({span["trace_id"] for span in collector.spans}) == 1


def test_enable_tracing_rejects_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        enable_tracing(None, sample_rate=-1, set_global=False)
