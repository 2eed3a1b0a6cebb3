"""What an unauthenticated peer can cost a server, and what a refused one learns.

Each test here failed before the limits it checks existed (issue 12): the frame cap
before the handshake, CBOR decoded without semantic tags, the handshake timeout, the
connection cap, refusals that say nothing about the server, rate-limited warnings.
"""

from __future__ import annotations

import base64
import logging
import re
import struct
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import cbor2
import pytest

from pyweaver import call
from pyweaver._errors import BootstrapError
from pyweaver.call import _cbor, _kinds, _wire
from pyweaver.call._protocol import Connection, Handshake, Role, State
from pyweaver.call._ratelimit import RateLimitedLog
from pyweaver.contract import _bootstrap, _messages

from .test_robustness import (
    DEPLOYMENT,
    ECHO,
    FINGERPRINT,
    RawClient,
    echo,
    goodbye_in,
    read_until_closed,
)

KEY = call.method_key("app.Reverser", "reverse")


def server_core(**kwargs: int) -> Connection:
    return Connection(Role.SERVER, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, **kwargs)


def client_core(**kwargs: int) -> Connection:
    return Connection(Role.CLIENT, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, **kwargs)


# ------------------------------------------------------------------ frame caps


def test_before_the_handshake_the_frame_cap_is_small() -> None:
    assert call.DEFAULT_MAX_HANDSHAKE_FRAME == 64 << 10
    s = server_core()
    header = struct.pack("<QQ", 0, _wire.HANDSHAKE | ((95 << 20) << 8))
    with pytest.raises(call.RemoteProtocolError) as caught:
        s.receive_data(header)  # refused from the header alone: nothing buffered
    assert caught.value.code == "frame-too-large"
    assert s.buffered == 0 and s.state is State.FAILED
    # Exactly the handshake cap is buffered (and then judged).
    s = server_core(max_handshake_frame=100)
    s.receive_data(struct.pack("<QQ", 0, _wire.HANDSHAKE | (100 << 8)) + b"\0" * 99)
    assert s.buffered == 16 + 99


def test_the_client_applies_the_small_cap_until_the_server_answers() -> None:
    c = client_core(max_handshake_frame=1024)
    c.hello()
    with pytest.raises(call.RemoteProtocolError, match="exceeds the 1024-byte limit"):
        c.receive_data(struct.pack("<QQ", 0, _wire.HANDSHAKE | (1025 << 8)))


def test_after_the_handshake_the_big_cap_applies() -> None:
    c, s = client_core(max_handshake_frame=64), server_core(max_handshake_frame=64)
    s.receive_data(c.hello())
    # The server's hello, then (in the same bytes) nothing else: the client is open.
    assert c.receive_data(s.hello()) == [Handshake(1, DEPLOYMENT, FINGERPRINT)]
    frame = c.send_request(1, KEY, 0, b"x" * 10_000)
    [request] = s.receive_data(frame)
    assert len(request.payload) == 10_000  # type: ignore[union-attr]
    answer = s.send_response(1, b"y" * 10_000)
    [response] = c.receive_data(answer)
    assert len(response.payload) == 10_000  # type: ignore[union-attr]


# ------------------------------------------------------------------ strict CBOR


def regex() -> tuple[cbor2.CBORTag, Callable[[], bool]]:
    """A CBOR regex (tag 35) that cbor2 would compile, and whether it was compiled:
    ``re`` caches every pattern it compiles (cbor2 keeps its own reference to
    ``re.compile``, so patching that would not see it)."""
    pattern = f"(a|b)*c{uuid.uuid4().hex}"
    return cbor2.CBORTag(35, pattern), lambda: any(
        key[1] == pattern
        for key in re._cache  # type: ignore[attr-defined]
    )


def test_a_handshake_with_semantic_tags_is_refused_without_acting_on_them() -> None:
    tag, compiled = regex()
    body = struct.pack("<I", 1) + cbor2.dumps([tag, b"fp"])
    s = server_core()
    with pytest.raises(call.RemoteProtocolError) as caught:
        s.receive_data(_wire.frame_header(0, _wire.HANDSHAKE, len(body)) + body)
    assert caught.value.code == "bad-handshake"
    assert not compiled()


@pytest.mark.parametrize("tag", sorted(_cbor.BUILTIN_TAGS | {9999, 60001}))
def test_every_tag_is_refused_by_the_strict_decoder(tag: int) -> None:
    for value in [0, "1.5", b"\0" * 16, [1, 2], {"a": 1}]:
        data = cbor2.dumps(cbor2.CBORTag(tag, value))
        with pytest.raises(cbor2.CBORDecodeError):
            _cbor.loads(data)
        if tag not in (2, 3):
            with pytest.raises(cbor2.CBORDecodeError):
                _cbor.loads_payload(data)


def test_payloads_keep_their_bignums() -> None:
    values = [2**100, -(2**100), [1, "x", b"y", 1.5, None, True, {"k": [2**70]}]]
    assert _cbor.loads_payload(cbor2.dumps(values)) == values


def test_garbage_is_always_a_decode_error() -> None:
    for data in [b"", b"\xff", b"\x9b" + b"\xff" * 8, b"\x81" * 1000 + b"\0", b"\x7f\x61"]:
        with pytest.raises(cbor2.CBORDecodeError):
            _cbor.loads(data)


def test_error_frames_and_metadata_are_decoded_strictly() -> None:
    tag, compiled = regex()
    with pytest.raises(call.RemoteProtocolError):
        _wire.decode_error(cbor2.dumps([tag, "message"]))
    assert not compiled()
    tag, compiled = regex()
    metadata = cbor2.dumps({"k": tag})
    body = KEY + struct.pack("<QBI", 0, _wire.FLAG_METADATA, len(metadata)) + metadata
    with pytest.raises(call.RemoteProtocolError):
        _wire.decode_request(body)
    assert not compiled()


def test_control_messages_and_the_bootstrap_are_decoded_strictly() -> None:
    tag, compiled = regex()
    with pytest.raises(call.RemoteProtocolError, match="malformed control message"):
        _messages.decode(_messages.RoutingInfo, cbor2.dumps({"components": tag}))
    assert not compiled()
    tag, compiled = regex()
    bootstrap = base64.b64encode(cbor2.dumps({"deployment_id": tag})).decode()
    with pytest.raises(BootstrapError):
        _bootstrap.Bootstrap.decode(bootstrap)
    assert not compiled()


# ------------------------------------------------------------------ warnings


def test_warnings_are_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("tests.ratelimit"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tests.ratelimit"):
        for _ in range(100):
            log.warning("refused", "refused %s", "peer")
            log.warning("timeout", "timed out")
        assert [r.getMessage() for r in caplog.records] == ["refused peer", "timed out"]
        assert log.suppressed("refused") == 99
        now[0] = 10.5
        log.warning("refused", "refused %s", "again")
    assert caplog.records[-1].getMessage() == (
        "refused again (and 99 more like it in the last 10 s, not logged)"
    )
    assert log.suppressed("refused") == 0


# ------------------------------------------------------------------ servers


@pytest.fixture
def socket_transport(transport: str) -> str:
    if transport == "mem":
        pytest.skip("raw sockets only")
    return transport


def serve(address: str, driver: str, **limits: float) -> AbstractAsyncContextManager[call.Server]:
    return call.serve(
        address,
        {ECHO: echo},
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        driver=driver,  # type: ignore[arg-type]
        **limits,  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_a_stranger_cannot_make_the_server_buffer_a_big_frame(
    socket_transport: str, server_address: str, driver: str
) -> None:
    async with (
        serve(server_address, driver) as server,
        RawClient.connect(server.address) as raw,
    ):
        # 95 MiB announced as a handshake: refused from its header.
        await raw.stream.send(struct.pack("<QQ", 0, _wire.HANDSHAKE | ((95 << 20) << 8)))
        kind, message = goodbye_in(await read_until_closed(raw.stream))
        assert kind == _kinds.PROTOCOL and "65536-byte limit" in message


@pytest.mark.anyio
async def test_a_connection_without_a_handshake_is_closed_in_time(
    socket_transport: str, server_address: str, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(server_address, driver, handshake_timeout=0.2) as server:
        async with RawClient.connect(server.address) as raw:
            kind, message = goodbye_in(await read_until_closed(raw.stream))
            assert (kind, message) == (_kinds.PROTOCOL, "no handshake in time")
        with anyio.fail_after(5):
            while server.connections:
                await anyio.sleep(0.01)
        # A client that does handshake stays.
        async with RawClient.connect(server.address) as raw:
            await raw.handshake()
            await anyio.sleep(0.4)
            await raw.stream.send(raw.core.send_request(1, ECHO, 0, b"still here"))
            assert await raw.next_event() == call.Response(1, b"still here")
    assert "no handshake within 0.2 s" in caplog.text


@pytest.mark.anyio
async def test_connections_beyond_the_cap_are_closed_and_counted(
    socket_transport: str, server_address: str, driver: str
) -> None:
    async with serve(server_address, driver, max_connections=2) as server:
        async with RawClient.connect(server.address) as first:
            await first.handshake()
            async with RawClient.connect(server.address):  # never handshakes: still counts
                with anyio.fail_after(5):
                    while server.connections < 2:
                        await anyio.sleep(0.01)
                async with RawClient.connect(server.address) as third:
                    assert await read_until_closed(third.stream) == b""
                assert server.refused_connections == 1
            with anyio.fail_after(5):
                while server.connections > 1:
                    await anyio.sleep(0.01)
            # A place is free again.
            async with RawClient.connect(server.address) as fourth:
                await fourth.handshake()
            await first.stream.send(first.core.send_request(1, ECHO, 0, b"first"))
            assert await first.next_event() == call.Response(1, b"first")
        assert server.refused_connections == 1


@pytest.mark.anyio
async def test_a_refused_peer_learns_nothing_about_the_server(
    server_address: str, driver: str
) -> None:
    async with call.serve(
        server_address,
        {ECHO: echo},
        deployment_id="secret-deployment",
        fingerprint=b"\x5e\xc7\xe7",
        driver=driver,  # type: ignore[arg-type]
    ) as server:
        stream = await call._transport.connect_stream(call._transport.parse_address(server.address))
        async with stream:
            await stream.send(client_core().hello())
            received = await read_until_closed(stream)
    kind, message = goodbye_in(received)
    assert (kind, message) == (_kinds.HANDSHAKE_REFUSED, "handshake refused")
    assert b"secret" not in received and b"\x5e\xc7\xe7" not in received


@pytest.mark.anyio
async def test_a_flood_of_bad_peers_logs_one_warning(
    socket_transport: str, server_address: str, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyweaver.call")
    async with serve(server_address, driver) as server:
        for _ in range(20):
            async with RawClient.connect(server.address) as raw:
                await raw.stream.send(struct.pack("<QQ", 0, 0x77))  # no such frame type
                await read_until_closed(raw.stream)
        assert server.warnings.suppressed("protocol:unknown-frame") >= 10
    warnings = [r for r in caplog.records if "closing call connection" in r.getMessage()]
    assert 1 <= len(warnings) <= 2
