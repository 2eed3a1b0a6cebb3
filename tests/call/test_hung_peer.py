"""A server that stops answering (a SIGSTOPped process: the kernel still accepts its
bytes, nobody reads them) costs a caller bounded time: keepalive declares the connection
lost, and a call without a deadline of its own gets the client's default deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from pyweaver import call
from pyweaver._errors import RemoteCallError
from pyweaver.call._protocol import Connection, Handshake, Request, Role

pytestmark = pytest.mark.anyio

DEPLOYMENT = "hung"
FINGERPRINT = b"fp"
ECHO = call.method_key("tests.Echo", "echo")


@asynccontextmanager
async def silent_server(*, answer_probes: bool = False) -> AsyncIterator[str]:
    """A server that completes the handshake and then never answers a request (with
    ``answer_probes``: answers only keepalive probes, like a live server whose method
    is slow)."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        core = Connection(Role.SERVER, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT)
        async with stream:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                for event in core.receive_data(data):
                    if isinstance(event, Handshake):
                        await stream.send(core.hello())
                    elif (
                        isinstance(event, Request) and answer_probes and event.method_key != ECHO
                    ):
                        reply = core.send_error(event.request_id, "unknown_method", "no")
                        await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield f"tcp://127.0.0.1:{port}"
        group.cancel_scope.cancel()


async def test_keepalive_fails_a_call_on_a_silent_server() -> None:
    async with (
        silent_server() as endpoint,
        call.Client(
            [endpoint],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            keepalive_interval=0.1,
            keepalive_timeout=0.2,
        ) as client,
    ):
        with anyio.fail_after(10):
            await client.wait_ready()
            with pytest.raises(RemoteCallError, match="keepalive"):
                await client.call(ECHO, b"x", retriable=False)


async def test_a_server_that_answers_probes_is_kept() -> None:
    async with (
        silent_server(answer_probes=True) as endpoint,
        call.Client(
            [endpoint],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            keepalive_interval=0.05,
            keepalive_timeout=0.1,
        ) as client,
    ):
        with anyio.fail_after(10):
            await client.wait_ready()
        with anyio.move_on_after(0.6) as scope:
            await client.call(ECHO, b"x", retriable=False)  # slow, but alive
        assert scope.cancelled_caught
        assert client.ready == (endpoint,)


async def test_a_call_without_a_deadline_gets_the_default_one() -> None:
    async with (
        silent_server(answer_probes=True) as endpoint,
        call.Client(
            [endpoint],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            call_timeout=0.3,
            keepalive_interval=None,
        ) as client,
    ):
        with anyio.fail_after(10):
            await client.wait_ready()
        # No deadline of the caller's own here (pytest's per-test timeout bounds it).
        with pytest.raises(RemoteCallError, match="default call deadline"):
            await client.call(ECHO, b"x")


async def test_in_flight_counts_calls_per_endpoint() -> None:
    async with (
        silent_server(answer_probes=True) as endpoint,
        call.Client([endpoint], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT) as client,
    ):
        with anyio.fail_after(10):
            await client.wait_ready()
        assert client.in_flight(endpoint) == 0
        assert client.in_flight("tcp://127.0.0.1:1") == 0
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(client.call, ECHO, b"x")
            with anyio.fail_after(5):
                while client.in_flight(endpoint) < 3:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        assert client.in_flight(endpoint) == 0
