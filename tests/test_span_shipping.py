"""A weavelet's finished spans: handed over as they are when they end (no conversion on
the call's path), shipped to the envelope as span dicts in batches."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyweaver._runtime import _tracing
from pyweaver._runtime._shipping import SpanShipper
from pyweaver.contract import _messages as m

pytestmark = pytest.mark.anyio


class FakeControl:
    """The envelope's end of the control connection: keeps what it is sent."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def call(self, key: bytes, payload: bytes) -> bytes:
        assert key == m.TRACE_SPANS.key
        self.batches.append(m.decode(m.TraceSpans, payload).spans)
        await anyio.sleep(0)
        return b""


async def test_spans_are_converted_when_shipped_not_when_they_end() -> None:
    shipper = SpanShipper()
    _tracing.enable_tracing(shipper.processor(), service_name="ship", set_global=False)
    try:
        with _tracing.start_span("root", require_parent=False), _tracing.start_span("child"):
            pass
        pending = list(shipper._pending)
        assert len(pending) == 2
        assert not any(isinstance(span, dict) for span in pending)  # not converted yet
        shipper.sink({"name": "already a dict"})  # the older form still ships as is
        control = FakeControl()
        await shipper._flush(control)  # type: ignore[arg-type]
    finally:
        _tracing.disable_tracing()
    (batch,) = control.batches
    assert [span["name"] for span in batch] == ["child", "root", "already a dict"]
    child, root = batch[0], batch[1]
    assert child["parent_span_id"] == root["span_id"] and child["trace_id"] == root["trace_id"]
    assert root["resource"]["service.name"] == "ship"
    assert not shipper._pending
