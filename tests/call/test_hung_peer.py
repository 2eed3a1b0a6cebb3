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
from tests.call.test_call import running

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


async def test_the_default_deadline_reaches_the_server_which_cancels_the_late_call() -> None:
    """No cancel scope per call: the default deadline is sent like any deadline, the
    client's sweeper fails the call when it passes, and the server hears the cancel."""
    seen: list[float] = []
    cancelled = anyio.Event()

    async def slow(payload: bytes) -> bytes:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return payload

    async with running("tcp://127.0.0.1:0", {ECHO: slow}, call_timeout=0.3) as (_, client):
        with anyio.fail_after(10):
            await client.wait_ready()
        started = anyio.current_time()
        # No deadline of the caller's own here (pytest's per-test timeout bounds it).
        with pytest.raises(RemoteCallError, match=r"default call deadline of 0\.3 s"):
            await client.call(ECHO, b"x")
        assert 0.25 <= anyio.current_time() - started < 5
        with anyio.fail_after(10):
            await cancelled.wait()
        assert len(seen) == 1
        # The server's deadline is its clock plus 0.3 s; (t + 0.3) - t can round to a
        # hair over 0.3 (CI once saw 0.3000000000029).
        assert 0 < seen[0] <= 0.3 + 1e-9


async def test_calls_that_answer_in_time_leave_nothing_for_the_sweeper() -> None:
    release = anyio.Event()

    async def echo(payload: bytes) -> bytes:
        if payload.startswith(b"hold"):
            await release.wait()
        return payload

    async with running("tcp://127.0.0.1:0", {ECHO: echo}, call_timeout=5) as (server, client):
        with anyio.fail_after(10):
            await client.wait_ready()
        async with anyio.create_task_group() as group:  # no deadline of their own
            for index in range(50):
                group.start_soon(client.call, ECHO, b"%d" % index)
        session = client._live[server.address]
        assert session.in_flight == 0
        assert not session._expires  # every answered call took its default deadline back
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(client.call, ECHO, b"hold")
            with anyio.fail_after(5):
                while session.in_flight < 3:
                    await anyio.sleep(0.01)
            assert len(session._expires) == 3  # in flight: the sweeper's to watch
            release.set()
        assert not session._expires
        # A call with a deadline of its own is bounded by its caller's scope instead.
        with anyio.fail_after(5):
            assert await client.call(ECHO, b"own") == b"own"
        assert not session._expires
