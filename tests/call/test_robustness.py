"""Misbehaving peers: garbage, truncated and oversized frames, unknown methods, a server
that drops connections mid-call, deadlines enforced by the server alone."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from pyweaver import call
from pyweaver.call import _kinds, _transport, _wire
from pyweaver.call._protocol import Connection, Error, Goodbye, Handshake, Request, Response, Role

pytestmark = pytest.mark.anyio

DEPLOYMENT = "robust"
FINGERPRINT = b"fp"
ECHO = call.method_key("tests.Echo", "echo")
SLOW = call.method_key("tests.Echo", "slow")


async def echo(payload: bytes) -> bytes:
    return payload


class RawClient:
    """A hand-driven client: the sans-IO core over a raw byte stream."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.core = Connection(Role.CLIENT, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT)
        self.events: list[object] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, endpoint: str) -> AsyncIterator[RawClient]:
        stream = await _transport.connect_stream(_transport.parse_address(endpoint))
        async with stream:
            yield cls(stream)

    async def handshake(self) -> None:
        await self.stream.send(self.core.hello())
        assert isinstance(await self.next_event(), Handshake)

    async def next_event(self) -> object:
        with anyio.fail_after(5):
            while not self.events:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                self.events += self.core.receive_data(data)
        return self.events.pop(0)


async def read_until_closed(stream: anyio.abc.ByteStream) -> bytes:
    received = b""
    with anyio.fail_after(5):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return received


def goodbye_in(data: bytes) -> tuple[str, str]:
    request_id, word = struct.unpack_from("<QQ", data)
    assert (request_id, word & 0xFF) == (0, _wire.ERROR)
    return _wire.decode_error(data[16 : 16 + (word >> 8)])


@pytest.fixture
def socket_transport(transport: str) -> str:
    if transport == "mem":
        pytest.skip("raw sockets only")
    return transport


async def test_a_bad_peer_only_loses_its_own_connection(
    socket_transport: str, server_address: str, driver: str
) -> None:
    async with (
        call.serve(
            server_address,
            {ECHO: echo},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as server,
        call.Client(
            [server.address],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as client,
    ):
        assert await client.call(ECHO, b"before") == b"before"

        # Garbage instead of a handshake.
        async with RawClient.connect(server.address) as raw:
            await raw.stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            kind, _ = goodbye_in(await read_until_closed(raw.stream))
            assert kind == _kinds.PROTOCOL

        # A truncated frame, then the end of the stream.
        async with RawClient.connect(server.address) as raw:
            await raw.handshake()
            await raw.stream.send(raw.core.send_request(1, ECHO, 0, b"x" * 100)[:50])
            await raw.stream.send_eof()
            await read_until_closed(raw.stream)

        # A frame longer than the server accepts: refused from its header alone.
        async with RawClient.connect(server.address) as raw:
            await raw.handshake()
            await raw.stream.send(struct.pack("<QQ", 1, _wire.REQUEST | ((200 << 20) << 8)))
            kind, message = goodbye_in(await read_until_closed(raw.stream))
            assert kind == _kinds.PROTOCOL and "exceeds" in message

        # An unknown method is an error for that request only.
        async with RawClient.connect(server.address) as raw:
            await raw.handshake()
            unknown = call.method_key("no.Such", "method")
            await raw.stream.send(raw.core.send_request(1, unknown, 0, b""))
            event = await raw.next_event()
            assert isinstance(event, Error) and event.kind == _kinds.UNKNOWN_METHOD
            await raw.stream.send(raw.core.send_request(2, ECHO, 0, b"still here"))
            assert await raw.next_event() == Response(2, b"still here")

        assert await client.call(ECHO, b"after") == b"after"
        assert client.ready == (server.address,)


async def test_the_server_enforces_the_deadline_itself(server_address: str, driver: str) -> None:
    handler_cancelled = anyio.Event()

    async def slow(payload: bytes) -> bytes:
        try:
            await anyio.sleep_forever()
        finally:
            handler_cancelled.set()
        raise AssertionError("unreachable")

    async with (
        call.serve(
            server_address,
            {SLOW: slow},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as server,
        RawClient.connect(server.address) as raw,
    ):
        await raw.handshake()
        # 50 ms left, and the client never sends a cancel.
        await raw.stream.send(raw.core.send_request(1, SLOW, 50_000, b""))
        event = await raw.next_event()
        assert isinstance(event, Error) and event.kind == _kinds.DEADLINE
        assert handler_cancelled.is_set()
        # A cancel for a request that has not started yet is answered too.
        await raw.stream.send(raw.core.send_request(2, SLOW, 0, b"") + raw.core.send_cancel(2))
        event = await raw.next_event()
        assert isinstance(event, Error) and event.kind == _kinds.CANCELLED


async def test_a_deadline_that_passes_while_the_handler_runs_inline_cancels_it_at_its_first_wait(
    server_address: str, driver: str
) -> None:
    """The dispatcher records a request's deadline and arms it only if the handler
    suspends; one that passed meanwhile cancels the handler at that first wait."""
    cancelled = anyio.Event()

    async def busy_then_slow(payload: bytes) -> bytes:
        time.sleep(0.08)  # past the 50 ms deadline without suspending
        try:
            await anyio.sleep(30)
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async with (
        call.serve(
            server_address,
            {SLOW: busy_then_slow},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            driver=driver,  # type: ignore[arg-type]
        ) as server,
        RawClient.connect(server.address) as raw,
    ):
        await raw.handshake()
        started = time.monotonic()
        await raw.stream.send(raw.core.send_request(1, SLOW, 50_000, b""))
        with anyio.fail_after(10):
            event = await raw.next_event()
        assert isinstance(event, Error) and event.kind == _kinds.DEADLINE
        assert cancelled.is_set()
        assert time.monotonic() - started < 5  # not the handler's 30 s


class FlakyServer:
    """Answers handshakes, then drops the connection on the first ``drops`` requests
    (after reading them) and echoes the rest."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests = 0

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
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
                    elif isinstance(event, Request):
                        self.requests += 1
                        if self.drops:
                            self.drops -= 1
                            return  # the method "may have run"
                        await stream.send(core.send_response(event.request_id, event.payload))


@asynccontextmanager
async def flaky_server(address: str, drops: int) -> AsyncIterator[tuple[str, FlakyServer]]:
    flaky = FlakyServer(drops)
    listener, bound = await _transport.listen_stream(_transport.parse_address(address))

    async def accept_loop(task_group: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            task_group.start_soon(flaky.handle, stream)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(accept_loop, task_group)
        try:
            yield str(bound), flaky
        finally:
            task_group.cancel_scope.cancel()
            await listener.aclose()


@pytest.mark.parametrize("address", ["mem://", "tcp://127.0.0.1:0"])
async def test_a_connection_broken_after_sending(address: str) -> None:
    policy = call.RetryPolicy(initial_backoff=0.001)
    async with (
        flaky_server(address, drops=1) as (endpoint, flaky),
        call.Client(
            [endpoint], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, retry=policy
        ) as client,
    ):
        with pytest.raises(call.RemoteCallError, match="may have run") as caught:
            await client.call(ECHO, b"once", retriable=False)
        assert not isinstance(caught.value, call.RetriableError)
        assert flaky.requests == 1
        flaky.drops = 2
        with anyio.fail_after(10):
            assert await client.call(ECHO, b"again") == b"again"
        assert flaky.requests == 4  # at least once: it ran (or may have) three times


async def test_the_balancer_gets_the_shard_key() -> None:
    seen: list[tuple[tuple[str, ...], int]] = []

    class Recording:
        def pick(self, endpoints: Sequence[str], shard_key: int) -> str | None:
            seen.append((tuple(endpoints), shard_key))
            return endpoints[-1] if endpoints else None

    async with (
        call.serve(
            "mem://", {ECHO: echo}, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT
        ) as server,
        call.Client(
            [server.address],
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            balancer=Recording(),
        ) as client,
    ):
        await client.call(ECHO, b"", shard_key=42)
        await client.call(ECHO, b"")
    assert seen[-2:] == [((server.address,), 42), ((server.address,), 0)]


def test_shipped_balancers() -> None:
    round_robin = call.RoundRobin()
    assert [round_robin.pick(["a", "b", "c"], 0) for _ in range(4)] == ["a", "b", "c", "a"]
    assert round_robin.pick([], 0) is None
    hashing = call.HashBalancer()
    endpoints = [f"tcp://10.0.0.{i}:1" for i in range(5)]
    picks = {key: hashing.pick(endpoints, key) for key in range(1, 200)}
    assert len(set(picks.values())) == 5
    # Removing one endpoint moves only the keys that were on it.
    fewer = endpoints[1:]
    for key, endpoint in picks.items():
        if endpoint != endpoints[0]:
            assert hashing.pick(fewer, key) == endpoint


async def test_shutdown_lets_running_calls_finish() -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def slow(payload: bytes) -> bytes:
        started.set()
        await release.wait()
        return b"finished"

    results: list[object] = []
    async with anyio.create_task_group() as task_group:
        async with call.serve(
            "mem://",
            {SLOW: slow},
            deployment_id=DEPLOYMENT,
            fingerprint=FINGERPRINT,
            shutdown_grace=5,
        ) as server:
            raw_context = RawClient.connect(server.address)
            raw = await raw_context.__aenter__()
            await raw.handshake()
            await raw.stream.send(raw.core.send_request(1, SLOW, 0, b""))
            with anyio.fail_after(5):
                await started.wait()

            async def release_soon() -> None:
                await anyio.sleep(0.05)
                # A request arriving while the server drains is turned away.
                await raw.stream.send(raw.core.send_request(2, SLOW, 0, b""))
                await anyio.sleep(0.05)
                release.set()

            task_group.start_soon(release_soon)
        # The block exit waited for the running call.
        results += [await raw.next_event(), await raw.next_event(), await raw.next_event()]
        await raw_context.__aexit__(None, None, None)
    assert results[0] == Error(2, _kinds.UNAVAILABLE, "the server is shutting down")
    assert results[1] == Response(1, b"finished")
    assert isinstance(results[2], Goodbye) and results[2].kind == _kinds.SHUTDOWN


def test_public_names_are_pinned() -> None:
    assert sorted(call.__all__) == sorted(
        [
            "DEFAULT_HANDSHAKE_TIMEOUT",
            "DEFAULT_MAX_CONNECTIONS",
            "DEFAULT_MAX_FRAME",
            "DEFAULT_MAX_HANDSHAKE_FRAME",
            "PROTOCOL_VERSION",
            "Authorizer",
            "Balancer",
            "Cancel",
            "Client",
            "Connection",
            "ConnectionClosed",
            "Error",
            "Event",
            "Goodbye",
            "Handler",
            "Handshake",
            "HandshakeError",
            "HashBalancer",
            "LocalProtocolError",
            "RemoteCallError",
            "RemoteProtocolError",
            "Request",
            "Response",
            "RetriableError",
            "RetryPolicy",
            "Role",
            "Server",
            "State",
            "TraceContext",
            "Unavailable",
            "enable_tracing",
            "method_key",
            "serve",
            "strict_cbor_decoder",
            "strict_cbor_loads",
            "strict_payload_loads",
            "tracing_enabled",
            "use_uvloop",
        ]
    )
    for name in call.__all__:
        assert getattr(call, name) is not None


def test_endpoint_strings() -> None:
    parse = _transport.parse_address
    assert parse("tcp://127.0.0.1:1234") == _transport.Address("tcp", host="127.0.0.1", port=1234)
    assert parse("tcp://[::1]:1234") == _transport.Address("tcp", host="::1", port=1234)
    assert str(parse("tcp://[::1]:1234")) == "tcp://[::1]:1234"
    assert parse("unix:///path/to.sock") == _transport.Address("unix", path="/path/to.sock")
    assert parse("mem://name") == _transport.Address("mem", path="name")
    for bad in [
        "127.0.0.1:1",
        "tcp://::1:1",
        "tcp://host",
        "tcp://h:99999",
        "unix://",
        "udp://x:1",
    ]:
        with pytest.raises(ValueError, match="endpoint"):
            parse(bad)


async def test_ipv6_loopback() -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with (
        call.serve(
            "tcp://[::1]:0", {ECHO: echo}, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT
        ) as server,
        call.Client([server.address], deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT) as client,
    ):
        assert server.address.startswith("tcp://[::1]:")
        assert await client.call(ECHO, b"v6") == b"v6"


async def test_a_closed_connection_cancels_its_requests(server_address: str, driver: str) -> None:
    started = anyio.Event()
    handler_cancelled = anyio.Event()

    async def slow(payload: bytes) -> bytes:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            handler_cancelled.set()
        raise AssertionError("unreachable")

    async with call.serve(
        server_address,
        {SLOW: slow},
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,  # type: ignore[arg-type]
    ) as server:
        async with RawClient.connect(server.address) as raw:
            await raw.handshake()
            await raw.stream.send(raw.core.send_request(1, SLOW, 0, b""))
            with anyio.fail_after(5):
                await started.wait()
        # The client is gone without a word: its request is cancelled.
        with anyio.fail_after(5):
            await handler_cancelled.wait()
        await eventually_no_connections(server)


async def eventually_no_connections(server: call.Server) -> None:
    with anyio.fail_after(5):
        while server.connections:
            await anyio.sleep(0.005)


async def test_a_flood_of_suspending_requests_is_refused_past_the_cap(
    server_address: str, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyweaver.call import _session

    monkeypatch.setattr(_session, "MAX_REQUESTS_PER_CONNECTION", 3)
    release = anyio.Event()
    running = 0

    async def slow(payload: bytes) -> bytes:
        nonlocal running
        running += 1
        await release.wait()
        return payload

    server_context = call.serve(
        server_address,
        {SLOW: slow},
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,  # type: ignore[arg-type]
    )
    async with server_context as server, RawClient.connect(server.address) as raw:
        await raw.handshake()
        for request_id in range(1, 6):
            await raw.stream.send(raw.core.send_request(request_id, SLOW, 0, b"x"))
        refused = [await raw.next_event() for _ in range(2)]
        assert all(isinstance(event, Error) for event in refused)
        assert {event.request_id for event in refused} == {4, 5}  # type: ignore[attr-defined]
        assert all(event.kind == _kinds.UNAVAILABLE for event in refused)  # type: ignore[attr-defined]
        assert "in flight" in refused[0].message  # type: ignore[attr-defined]
        assert running == 3
        release.set()
        answers = [await raw.next_event() for _ in range(3)]
        assert sorted(e.request_id for e in answers) == [1, 2, 3]  # type: ignore[attr-defined]
        assert all(isinstance(event, Response) for event in answers)
