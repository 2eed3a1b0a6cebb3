"""Client and server together, over every transport (mem, tcp, unix, tcp with the
streams driver) and backend (asyncio, asyncio+uvloop, trio)."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import cbor2
import pytest

from pyweaver import call
from pyweaver.call import _metadata
from pyweaver.call._metadata import metadata

pytestmark = pytest.mark.anyio

DEPLOYMENT = "test-deployment"
FINGERPRINT = b"\x00fingerprint"
ECHO = call.method_key("tests.Echo", "echo")
SLOW = call.method_key("tests.Echo", "slow")
FAIL = call.method_key("tests.Echo", "fail")


async def echo(payload: bytes) -> bytes:
    return payload


@asynccontextmanager
async def running(
    address: str,
    handlers: dict[bytes, call.Handler],
    driver: str = "auto",
    server_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> AsyncIterator[tuple[call.Server, call.Client]]:
    async with call.serve(  # noqa: SIM117 - the client needs server.address
        address,
        handlers,
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,  # type: ignore[arg-type]
        shutdown_grace=0.5,
        **(server_options or {}),
    ) as server:
        async with call.Client(
            [server.address],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
            **client_options,
        ) as client:
            yield server, client


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


# ------------------------------------------------------------------ basics


async def test_echo_and_many_concurrent_calls(server_address: str, driver: str) -> None:
    async with running(server_address, {ECHO: echo}, driver) as (server, client):
        assert server.address.startswith(server_address.split("://")[0])
        assert await client.call(ECHO, b"hello") == b"hello"
        assert await client.call(ECHO, b"") == b""
        payloads = [bytes([i % 256]) * (i * 37) for i in range(100)] + [b"x" * (1 << 16)] * 4
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            results[i] = await client.call(ECHO, payloads[i])

        async with anyio.create_task_group() as task_group:
            for i in range(len(payloads)):
                task_group.start_soon(one, i)
        assert [results[i] for i in range(len(payloads))] == payloads
        assert client.ready == (server.address,)


async def test_handlers_may_be_added_while_serving(server_address: str, driver: str) -> None:
    handlers: dict[bytes, call.Handler] = {}
    async with running(server_address, handlers, driver) as (_, client):
        with pytest.raises(call.RemoteCallError, match="unknown-method"):
            await client.call(ECHO, b"x")
        handlers[ECHO] = echo
        assert await client.call(ECHO, b"x") == b"x"


async def test_handler_failures_are_remote_call_errors(server_address: str, driver: str) -> None:
    async def fail(payload: bytes) -> bytes:
        raise ValueError("boom")

    async def not_bytes(payload: bytes) -> bytes:
        return "text"  # type: ignore[return-value]

    wrong = call.method_key("tests.Echo", "wrong")
    async with running(server_address, {FAIL: fail, wrong: not_bytes}, driver) as (server, client):
        with pytest.raises(call.RemoteCallError) as caught:
            await client.call(FAIL, b"x")
        assert not isinstance(caught.value, call.RetriableError)
        message = str(caught.value)
        assert "internal: ValueError: boom" in message
        assert server.address in message and FAIL.hex() in message
        with pytest.raises(call.RemoteCallError, match="not bytes"):
            await client.call(wrong, b"x")
        unknown = call.method_key("tests.Nothing", "here")
        with pytest.raises(call.RemoteCallError, match=f"unknown-method.*{unknown.hex()}"):
            await client.call(unknown, b"x")


async def test_unavailable_is_retried_and_bounded(server_address: str, driver: str) -> None:
    calls = 0
    failures_left = 2

    async def flaky(payload: bytes) -> bytes:
        nonlocal calls, failures_left
        calls += 1
        if failures_left:
            failures_left -= 1
            raise call.Unavailable("still starting")
        return b"ok"

    policy = call.RetryPolicy(max_attempts=4, initial_backoff=0.001)
    async with running(server_address, {ECHO: flaky}, driver, retry=policy) as (_, client):
        # The method did not run, so even a non-retriable call is re-sent.
        assert await client.call(ECHO, b"", retriable=False) == b"ok"
        assert calls == 3
        calls, failures_left = 0, 100
        with pytest.raises(call.RetriableError, match=r"after 4 attempt.*still starting"):
            await client.call(ECHO, b"")
        assert calls == 4


# ------------------------------------------------------------------ cancellation


async def test_cancel_before_send_sends_nothing(server_address: str, driver: str) -> None:
    calls = 0

    async def count(payload: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return payload

    async with running(server_address, {ECHO: count}, driver) as (_, client):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.call(ECHO, b"x")
        assert scope.cancelled_caught
        # An already expired deadline fails locally too.
        with anyio.move_on_after(-1) as expired:
            await client.call(ECHO, b"x")
        assert expired.cancelled_caught
        assert await client.call(ECHO, b"after") == b"after"
        assert calls == 1


async def test_cancel_while_the_handler_runs(server_address: str, driver: str) -> None:
    started = anyio.Event()
    handler_cancelled = anyio.Event()

    async def slow(payload: bytes) -> bytes:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            handler_cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with running(server_address, {SLOW: slow, ECHO: echo}, driver) as (server, client):
        # The first time, the handler starts inline and is handed its own task when it
        # suspends; later, the server knows it suspends and gives it a task up front.
        for _ in range(3):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(client.call, SLOW, b"x")
                with anyio.fail_after(5):
                    await started.wait()
                task_group.cancel_scope.cancel()
            with anyio.fail_after(5):
                await handler_cancelled.wait()
            started, handler_cancelled = anyio.Event(), anyio.Event()
        # The connection is still good, and a call cancelled after its answer is harmless.
        with anyio.CancelScope() as scope:
            assert await client.call(ECHO, b"x") == b"x"
            scope.cancel()
        assert await client.call(ECHO, b"y") == b"y"
        assert server.connections == 1


async def test_suspending_handlers_run_concurrently(server_address: str, driver: str) -> None:
    arrived = 0
    all_arrived = anyio.Event()

    async def gather(payload: bytes) -> bytes:
        nonlocal arrived
        await anyio.lowlevel.checkpoint()
        arrived += 1
        if arrived == 20:
            all_arrived.set()
        await all_arrived.wait()  # only returns once all 20 run at the same time
        return payload

    async with running(server_address, {SLOW: gather}, driver) as (_, client):
        results: list[bytes] = []

        async def one(i: int) -> None:
            results.append(await client.call(SLOW, b"%d" % i))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                for i in range(20):
                    task_group.start_soon(one, i)
        assert sorted(results) == sorted(b"%d" % i for i in range(20))


async def test_deadline_reaches_the_handler(server_address: str, driver: str) -> None:
    seen: list[float] = []

    async def report(payload: bytes) -> bytes:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        return b""

    async with running(server_address, {ECHO: report}, driver) as (_, client):
        with anyio.fail_after(5):
            await client.call(ECHO, b"")
        await client.call(ECHO, b"")
        assert 4.0 < seen[0] <= 5.0
        assert seen[1] == math.inf


async def test_deadline_expiry_cancels_the_handler(server_address: str, driver: str) -> None:
    handler_cancelled = anyio.Event()
    seen: list[float] = []

    async def slow(payload: bytes) -> bytes:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            handler_cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with running(server_address, {SLOW: slow}, driver) as (_, client):
        for _ in range(3):  # inline first, then in a task of its own (see above)
            with anyio.move_on_after(0.1) as scope:
                await client.call(SLOW, b"")
            assert scope.cancelled_caught
            with anyio.fail_after(5):
                await handler_cancelled.wait()
            handler_cancelled = anyio.Event()
        assert all(0 < left <= 0.1 + 1e-6 for left in seen), seen  # float rounding only


# ------------------------------------------------------------------ context

async def test_a_past_deadline_does_not_reach_the_next_request(
    server_address: str, driver: str
) -> None:
    """The dispatcher keeps one cancel scope for its life: a request with a short
    deadline, answered inline, must leave none behind for the requests after it, even
    once that deadline has passed (the next one suspends and keeps the scope)."""
    seen: list[float] = []

    async def watchdog() -> None:
        await anyio.sleep(5)
        raise AssertionError("no answer in 5 s: the server stopped dispatching")

    async def pause(payload: bytes) -> bytes:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        await anyio.sleep(0.3)
        return payload

    async with running(server_address, {ECHO: echo, SLOW: pause}, driver) as (_, client):
        for _ in range(2):
            with anyio.fail_after(0.05):
                assert await client.call(ECHO, b"quick") == b"quick"
            await anyio.sleep(0.1)  # the quick call's deadline passes
            async with anyio.create_task_group() as group:
                group.start_soon(watchdog)  # bounds the call without giving it a deadline
                assert await client.call(SLOW, b"slow") == b"slow"
                group.cancel_scope.cancel()
        assert seen == [math.inf, math.inf]



async def test_metadata_travels_hop_after_hop(server_address: str, driver: str) -> None:
    async def report(payload: bytes) -> bytes:
        return cbor2.dumps(dict(_metadata.current()))

    async with running(server_address, {ECHO: report}, driver) as (_, inner_client):

        async def forward(payload: bytes) -> bytes:
            return await inner_client.call(ECHO, payload)

        async with running("mem://", {ECHO: forward}) as (_, outer_client):
            with metadata.set(user="ann", tenant="t1"):
                assert cbor2.loads(await outer_client.call(ECHO, b"")) == {
                    "user": "ann",
                    "tenant": "t1",
                }
            # Nothing leaks into the next call's handler.
            assert cbor2.loads(await outer_client.call(ECHO, b"")) == {}


async def test_trace_context_travels_when_tracing_is_on() -> None:
    from opentelemetry import trace

    async def report(payload: bytes) -> bytes:
        context = trace.get_current_span().get_span_context()
        return cbor2.dumps([context.trace_id, context.span_id, int(context.trace_flags)])

    parent = trace.SpanContext(
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        span_id=0x0123456789ABCDEF,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    async with running("mem://", {ECHO: report}) as (_, client):
        with trace.use_span(trace.NonRecordingSpan(parent)):
            assert cbor2.loads(await client.call(ECHO, b"")) == [0, 0, 0]  # tracing is off
            call.enable_tracing()
            try:
                assert call.tracing_enabled()
                assert cbor2.loads(await client.call(ECHO, b"")) == [
                    parent.trace_id,
                    parent.span_id,
                    1,
                ]
            finally:
                call.enable_tracing(False)


# ------------------------------------------------------------------ endpoints


async def serve_until(
    address: str,
    handlers: dict[bytes, call.Handler],
    stop: anyio.Event,
    driver: str = "auto",
    *,
    task_status: anyio.abc.TaskStatus[call.Server] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A server in its own task, so it can stop while a client started later lives on."""
    async with call.serve(
        address,
        handlers,
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,  # type: ignore[arg-type]
        shutdown_grace=0.0,
    ) as server:
        task_status.started(server)
        await stop.wait()


async def test_reconnect_after_the_server_restarts(server_address: str, driver: str) -> None:
    async def first(payload: bytes) -> bytes:
        return b"1" + payload

    async def second(payload: bytes) -> bytes:
        return b"2" + payload

    async with anyio.create_task_group() as task_group:
        stop_first = anyio.Event()
        server = await task_group.start(
            serve_until, server_address, {ECHO: first}, stop_first, driver
        )
        async with call.Client(
            [server.address],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as client:
            assert await client.call(ECHO, b"x") == b"1x"
            stop_first.set()
            await eventually(lambda: client.ready == ())
            stop_second = anyio.Event()
            await task_group.start(serve_until, server.address, {ECHO: second}, stop_second, driver)
            with anyio.fail_after(10):
                assert await client.call(ECHO, b"x") == b"2x"
            stop_second.set()


async def test_a_stopping_server_leaves_a_newer_servers_socket_file(
    server_address: str, driver: str
) -> None:
    # Seen under load: a server that stopped removed its socket file after its
    # successor had bound the same path, so clients could never reconnect.
    if not server_address.startswith("unix://"):
        pytest.skip("Unix sockets only")
    path = server_address.removeprefix("unix://")

    async def second(payload: bytes) -> bytes:
        return b"2" + payload

    async with anyio.create_task_group() as task_group:
        stop_first, stop_second = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as first:
            await first.start(serve_until, server_address, {ECHO: echo}, stop_first, driver)
            os.unlink(path)  # as if the first one's listener had closed
            await task_group.start(
                serve_until, server_address, {ECHO: second}, stop_second, driver
            )
            stop_first.set()
        # The first server's teardown has run to its end.
        assert os.path.exists(path)
        async with call.Client(
            [server_address], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT
        ) as client:
            with anyio.fail_after(10):
                assert await client.call(ECHO, b"x") == b"2x"
        stop_second.set()


async def test_endpoints_added_and_removed_with_draining(
    server_address: str, driver: str, short_tmp: str
) -> None:
    address_b = server_address.replace("s.sock", "b.sock")
    started, release = anyio.Event(), anyio.Event()

    async def slow_a(payload: bytes) -> bytes:
        started.set()
        await release.wait()
        return b"A-slow"

    async def name_a(payload: bytes) -> bytes:
        return b"A"

    async def name_b(payload: bytes) -> bytes:
        return b"B"

    stop = anyio.Event()
    async with anyio.create_task_group() as servers:
        a = await servers.start(
            serve_until, server_address, {ECHO: name_a, SLOW: slow_a}, stop, driver
        )
        b = await servers.start(serve_until, address_b, {ECHO: name_b}, stop, driver)
        async with call.Client(
            [a.address],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as client:
            assert await client.call(ECHO, b"") == b"A"
            results: list[bytes] = []

            async def slow_call() -> None:
                results.append(await client.call(SLOW, b""))

            async with anyio.create_task_group() as calls:
                calls.start_soon(slow_call)
                with anyio.fail_after(5):
                    await started.wait()
                client.update_endpoints([b.address])
                assert client.endpoints == (b.address,)
                for _ in range(5):
                    assert await client.call(ECHO, b"") == b"B"
                assert a.connections == 1  # still draining its call
                release.set()
            assert results == [b"A-slow"]
            await eventually(lambda: a.connections == 0)
            client.update_endpoints([a.address, b.address])
            await eventually(lambda: len(client.ready) == 2)
            assert {await client.call(ECHO, b"") for _ in range(4)} == {b"A", b"B"}
        stop.set()


async def test_no_replica_fails_after_a_bounded_wait() -> None:
    async with call.Client(
        [], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, replica_wait=0.1
    ) as client:
        with pytest.raises(call.RetriableError, match=r"no reachable replica.*no endpoints"):
            await client.call(ECHO, b"")
    for nobody in ["tcp://127.0.0.1:1", "mem://nobody-listens", "unix:///nonexistent/x.sock"]:
        async with call.Client(
            [nobody], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, replica_wait=0.2
        ) as client:
            with anyio.fail_after(5):
                with pytest.raises(call.RetriableError, match=f"no reachable replica.*{nobody}"):
                    await client.call(ECHO, b"")


async def test_handshake_refusal_says_nothing_about_the_server(
    server_address: str, driver: str
) -> None:
    """The refused client learns what it sent, and nothing of the server's identity."""
    async with call.serve(
        server_address,
        {ECHO: echo},
        deployment_id="server-secret-A",
        fingerprint=b"\xaa\xaa",
        driver=driver,  # type: ignore[arg-type]
    ) as server:
        for deployment, fingerprint in [("B", b"\xaa\xaa"), ("server-secret-A", b"\xbb")]:
            async with call.Client(
                [server.address],
                deployment_id=deployment,
                fingerprint=fingerprint,
                replica_wait=0.3,
                driver=driver,  # type: ignore[arg-type]
            ) as client:
                with pytest.raises(call.RetriableError) as caught:
                    await client.call(ECHO, b"")
                message = str(caught.value)
                assert "refused the handshake of this client" in message
                assert f"(deployment {deployment!r}, fingerprint {fingerprint.hex()}" in message
                if deployment != "server-secret-A":
                    assert "server-secret-A" not in message
                if fingerprint != b"\xaa\xaa":
                    assert "aaaa" not in message


async def test_serve_on_an_already_bound_socket(short_tmp: str) -> None:
    import os
    import socket

    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(os.path.join(short_tmp, "bound.sock"))
    unix.listen()
    for sock in (tcp, unix):
        expected = sock.getsockname()
        async with running(sock, {ECHO: echo}) as (server, client):  # type: ignore[arg-type]
            assert str(expected[1] if sock is tcp else expected) in server.address
            assert await client.call(ECHO, b"bound") == b"bound"
