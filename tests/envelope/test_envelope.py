"""The envelope with hand-written weavelets (no app runtime): registration, the control
channel both ways, captured output, start failures, and deployment isolation."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyweaver import call
from pyweaver._errors import PyWeaverError, RemoteCallError
from pyweaver.contract import Bootstrap
from pyweaver.contract import messages as m
from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.envelope import (
    Envelope,
    InProcessChild,
    ProcessChild,
    ProcessExitedError,
)

pytestmark = pytest.mark.anyio

FINGERPRINT = b"f" * 16


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pwt-") as directory:
        yield Path(directory)


class Handler:
    """A deployer that records what the weavelet asked."""

    def __init__(self) -> None:
        self.logs: list[LogEntry] = []
        self.activated: list[str] = []
        self.registered: list[m.Register] = []

    def accept(self, envelope: Envelope, info: m.Register) -> str:
        self.registered.append(info)
        return "" if info.fingerprint == FINGERPRINT else "wrong app"

    async def activate_component(
        self, envelope: Envelope, request: m.ActivateComponent
    ) -> m.RoutingInfo:
        self.activated.append(request.component)
        return m.RoutingInfo(
            group=request.component, components=[request.component], version=1, replicas={}
        )

    async def get_listener_address(
        self, envelope: Envelope, request: m.ListenerAddressRequest
    ) -> m.ListenerAddress:
        return m.ListenerAddress(address="127.0.0.1:0")

    async def export_listener(
        self, envelope: Envelope, request: m.ExportListener
    ) -> m.ExportListenerReply:
        return m.ExportListenerReply(proxy_address="127.0.0.1:1")

    def handle_logs(self, envelope: Envelope, entries: Sequence[LogEntry]) -> None:
        self.logs.extend(entries)

    def handle_spans(self, envelope: Envelope, spans: Sequence[dict[str, Any]]) -> None:
        pass


class FakeWeavelet:
    """Speaks the weavelet's half of the control channel by hand."""

    def __init__(self, fingerprint: bytes = FINGERPRINT, deployment_id: str = "") -> None:
        self.fingerprint = fingerprint
        self.deployment_id = deployment_id
        self.routing: list[m.RoutingInfo] = []
        self.components: list[str] = []
        self.reply: m.RegisterReply | None = None
        self.activation: m.RoutingInfo | None = None

    async def __call__(self, bootstrap: Bootstrap) -> None:
        async def update_routing(info: m.RoutingInfo) -> m.Empty:
            self.routing.append(info)
            return m.Empty()

        async def update_components(request: m.UpdateComponents) -> m.Empty:
            self.components = request.components
            return m.Empty()

        async def health(request: m.Empty) -> m.Health:
            return m.Health(healthy=True, components=self.components)

        handlers = {
            m.UPDATE_ROUTING.key: m.UPDATE_ROUTING.handler(update_routing),
            m.UPDATE_COMPONENTS.key: m.UPDATE_COMPONENTS.handler(update_components),
            m.GET_HEALTH.key: m.GET_HEALTH.handler(health),
        }
        deployment_id = self.deployment_id or bootstrap.deployment_id
        async with (
            call.serve(
                bootstrap.control_address,
                handlers,
                deployment_id=deployment_id,
                fingerprint=m.CONTROL_FINGERPRINT,
            ),
            call.Client(
                [bootstrap.envelope_address],
                deployment_id=deployment_id,
                fingerprint=m.CONTROL_FINGERPRINT,
                replica_wait=0.5,
            ) as control,
        ):

            async def ask(method: m.ControlMethod[Any, Any], request: object) -> Any:
                return m.decode(method.reply, await control.call(method.key, m.encode(request)))

            self.reply = await ask(
                m.REGISTER,
                m.Register(
                    replica_id=bootstrap.replica_id,
                    pid=os.getpid(),
                    control_address=bootstrap.control_address,
                    data_address=bootstrap.data_address,
                    fingerprint=self.fingerprint,
                    version="test",
                ),
            )
            if self.reply.error:
                raise PyWeaverError(self.reply.error)
            self.activation = await ask(
                m.ACTIVATE_COMPONENT, m.ActivateComponent(component="app.B")
            )
            entry = LogEntry(time_ns=1, level="info", message="hello from the weavelet")
            await ask(m.LOG_BATCH, m.LogBatch(entries=[entry]))
            await anyio.sleep_forever()


def make_envelope(
    child: Any, handler: Handler, socket_dir: Path, *, deployment_id: str = "dep-1", **kw: Any
) -> Envelope:
    return Envelope(
        deployment_id=deployment_id,
        replica_id="r1",
        group="app.A",
        components=["app.A"],
        run_main=False,
        config=AppConfig(),
        child=child,
        handler=handler,
        socket_dir=socket_dir,
        name="w1",
        **kw,
    )


async def test_control_channel_both_ways(socket_dir: Path) -> None:
    handler = Handler()
    weavelet = FakeWeavelet()
    async with make_envelope(InProcessChild(weavelet), handler, socket_dir) as envelope:
        assert envelope.pid == os.getpid()
        assert envelope.data_address == f"unix://{socket_dir}/w1.d"
        assert [r.replica_id for r in handler.registered] == ["r1"]
        await envelope.update_components(["app.A"])
        info = m.RoutingInfo(group="app.B", components=["app.B"], version=3, replicas={"b#0": "x"})
        await envelope.update_routing(info)
        assert weavelet.routing == [info]
        health = await envelope.health()
        assert health.healthy and health.components == ["app.A"]
        with anyio.fail_after(5):
            while not handler.logs:
                await anyio.sleep(0.01)
        assert handler.activated == ["app.B"]
        assert weavelet.activation is not None and weavelet.activation.group == "app.B"
        assert handler.logs[0].message == "hello from the weavelet"
    assert envelope.returncode is not None


async def test_refused_registration_is_a_start_failure(socket_dir: Path) -> None:
    handler = Handler()
    weavelet = FakeWeavelet(fingerprint=b"x" * 16)
    with pytest.raises((PyWeaverError, ProcessExitedError)):
        async with make_envelope(InProcessChild(weavelet), handler, socket_dir, ready_timeout=5):
            pytest.fail("a weavelet of another app version must not start")
    assert weavelet.reply is not None and weavelet.reply.error == "wrong app"


async def test_weavelet_of_another_deployment_cannot_reach_the_envelope(socket_dir: Path) -> None:
    handler = Handler()
    weavelet = FakeWeavelet(deployment_id="another-deployment")
    with pytest.raises((RemoteCallError, ProcessExitedError)):
        async with make_envelope(InProcessChild(weavelet), handler, socket_dir, ready_timeout=5):
            pytest.fail("the handshake must refuse another deployment")
    assert handler.registered == []


@pytest.mark.slow
async def test_process_that_dies_at_start_reports_its_last_lines(socket_dir: Path) -> None:
    handler = Handler()
    script = "import sys; print('starting'); sys.exit('boom: no such component')"
    child = ProcessChild([sys.executable, "-c", script], stop_grace=1)
    with pytest.raises(ProcessExitedError) as failure:
        async with make_envelope(child, handler, socket_dir, ready_timeout=30):
            pytest.fail("the child exited; the envelope must not start")
    assert failure.value.returncode == 1
    assert ("stderr", "boom: no such component") in failure.value.last_lines
    # Its output was delivered as log entries too (the two pipes are read concurrently).
    assert sorted((e.source, e.message) for e in handler.logs) == [
        ("stderr", "boom: no such component"),
        ("stdout", "starting"),
    ]


@pytest.mark.slow
async def test_process_that_never_registers_times_out(socket_dir: Path) -> None:
    handler = Handler()
    child = ProcessChild([sys.executable, "-c", "import time; time.sleep(60)"], stop_grace=1)
    with pytest.raises(PyWeaverError, match="not ready"):
        async with make_envelope(child, handler, socket_dir, ready_timeout=0.5):
            pytest.fail("never ready")
