"""The sans-IO state machine and the wire format, without sockets or event loops."""

from __future__ import annotations

import ast
import pathlib
import re
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyweaver import call
from pyweaver.call import _protocol, _wire
from pyweaver.call._protocol import (
    Cancel,
    Connection,
    Error,
    Goodbye,
    Handshake,
    Request,
    Response,
    Role,
    State,
)

DEPLOYMENT = "dep-1"
FINGERPRINT = b"\x01\x02\x03\x04"


def client(**kwargs: object) -> Connection:
    return Connection(Role.CLIENT, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, **kwargs)  # type: ignore[arg-type]


def server(**kwargs: object) -> Connection:
    return Connection(Role.SERVER, deployment_id=DEPLOYMENT, fingerprint=FINGERPRINT, **kwargs)  # type: ignore[arg-type]


def open_pair(**kwargs: object) -> tuple[Connection, Connection]:
    c, s = client(**kwargs), server(**kwargs)
    assert s.receive_data(c.hello()) == [Handshake(1, DEPLOYMENT, FINGERPRINT)]
    assert s.state is State.HANDSHAKE_RECEIVED
    assert c.receive_data(s.hello()) == [Handshake(1, DEPLOYMENT, FINGERPRINT)]
    assert state(c) is State.OPEN and state(s) is State.OPEN
    return c, s


def state(connection: Connection) -> State:
    """The state now (a function call, so mypy does not narrow across calls)."""
    return connection.state


KEY = call.method_key("app.Reverser", "reverse")


# ------------------------------------------------------------------ the wire format


def test_method_key_is_sha256_prefix() -> None:
    import hashlib

    assert hashlib.sha256(b"app.Reverser.reverse").digest()[:16] == KEY
    assert len(KEY) == 16


def _docstring_hex(label: str) -> str:
    """The hex bytes of one line group of the worked example in _wire's docstring."""
    doc = _wire.__doc__ or ""
    lines = doc.split("Worked example", 1)[1].splitlines()
    out: list[str] = []
    collecting = False
    for line in lines:
        stripped = line.strip()
        starts_label = re.match(r"^[a-z][a-z ]*? += ", stripped)
        if starts_label and stripped.startswith(f"{label} "):
            collecting = True
            stripped = stripped.split("=", 1)[1]
        elif collecting and (starts_label or not stripped):
            break
        if collecting:
            for token in stripped.split():
                if re.fullmatch(r"([0-9a-f]{2})+", token):
                    out.append(token)
                else:
                    break
    return "".join(out)


def test_worked_example_in_the_docstring_is_exact() -> None:
    c, s = open_pair()
    payload = cbor2.dumps(["abc"])
    assert _docstring_hex("method key") == KEY.hex()
    request = c.send_request(1, KEY, 250_000, payload)
    assert _docstring_hex("request") == request.hex()
    [event] = s.receive_data(request)
    assert event == Request(1, KEY, 250_000, None, None, payload)
    response = s.send_response(1, cbor2.dumps(["cba"]))
    assert _docstring_hex("response") == response.hex()
    assert _docstring_hex("cancel") == _wire.frame_header(1, _wire.CANCEL, 0).hex()
    body = _wire.encode_error("unknown-method", "missing")
    assert _docstring_hex("error") == (_wire.frame_header(1, _wire.ERROR, len(body)) + body).hex()
    hello = Connection(Role.CLIENT, deployment_id="A", fingerprint=b"0123456789").hello()
    assert _docstring_hex("handshake") == hello.hex()


def test_request_round_trip_with_trace_and_metadata() -> None:
    c, s = open_pair()
    trace = call.TraceContext(bytes(range(16)), bytes(range(8)), 1, "vendor=abc")
    frame = c.send_request(
        7, KEY, 123, b"payload", trace=trace, metadata={"user": "ann", "tenant": "x"}
    )
    assert s.receive_data(frame) == [
        Request(7, KEY, 123, trace, {"user": "ann", "tenant": "x"}, b"payload")
    ]
    assert c.receive_data(s.send(Response(7, b"result"))) == [Response(7, b"result")]
    assert c.in_flight == frozenset() and s.in_flight == frozenset()


def test_many_frames_in_one_receive_and_split_everywhere() -> None:
    c, s = open_pair()
    frames = b"".join(c.send_request(i, KEY, 0, bytes([i]) * i) for i in range(1, 40))
    assert [e.request_id for e in s.receive_data(frames)] == list(range(1, 40))  # type: ignore[union-attr]
    answers = b"".join(s.send_response(i, bytes([i])) for i in range(1, 40))
    events: list[object] = []
    for i in range(len(answers)):  # one byte at a time
        events += c.receive_data(answers[i : i + 1])
    assert events == [Response(i, bytes([i])) for i in range(1, 40)]


def test_error_cancel_and_goodbye() -> None:
    c, s = open_pair()
    s.receive_data(c.send_request(1, KEY, 0, b""))
    assert s.receive_data(c.send_cancel(1)) == [Cancel(1)]
    assert c.receive_data(s.send_error(1, "cancelled", "by the client")) == [
        Error(1, "cancelled", "by the client")
    ]
    # A cancel that crosses the answer on the wire is no event.
    s.receive_data(c.send_request(2, KEY, 0, b""))
    answer = s.send_response(2, b"x")
    assert s.receive_data(c.send_cancel(2)) == []
    assert c.receive_data(answer) == [Response(2, b"x")]
    assert c.receive_data(s.goodbye("shutdown", "bye")) == [Goodbye("shutdown", "bye")]
    assert c.state is State.CLOSED


def test_end_of_stream() -> None:
    _c, s = open_pair()
    assert s.receive_data(b"") == [call.ConnectionClosed()]
    assert s.state is State.CLOSED
    c2, s2 = open_pair()
    s2.receive_data(c2.send_request(1, KEY, 0, b"abc")[:20])
    with pytest.raises(call.RemoteProtocolError, match="middle of a frame"):
        s2.receive_data(b"")


# ------------------------------------------------------------------ handshake


def test_handshake_mismatch_says_which_side_is_which() -> None:
    c = Connection(Role.CLIENT, deployment_id="B", fingerprint=b"\xbb" * 4)
    s = Connection(Role.SERVER, deployment_id="A", fingerprint=b"\xaa" * 4)
    with pytest.raises(call.HandshakeError) as caught:
        s.receive_data(c.hello())
    assert str(caught.value) == (
        "this server is deployment 'A' (fingerprint aaaaaaaa); "
        "the client is deployment 'B' (fingerprint bbbbbbbb)"
    )
    assert s.state is State.FAILED
    goodbye = s.goodbye("handshake", str(caught.value))
    assert state(s) is State.CLOSED
    assert c.receive_data(goodbye) == [Goodbye("handshake", str(caught.value))]

    # The client checks the server's handshake too.
    c = Connection(Role.CLIENT, deployment_id="A", fingerprint=b"\x01")
    s = Connection(Role.SERVER, deployment_id="A", fingerprint=b"\x02")
    c.hello()
    s_hello = Connection(Role.SERVER, deployment_id="A", fingerprint=b"\x02")
    s_hello.receive_data(Connection(Role.CLIENT, deployment_id="A", fingerprint=b"\x02").hello())
    with pytest.raises(
        call.HandshakeError,
        match=r"this client is deployment 'A' .*fingerprint 01.*the server .*fingerprint 02",
    ):
        c.receive_data(s_hello.hello())


def test_handshake_version_mismatch() -> None:
    c = Connection(Role.CLIENT, deployment_id="A", fingerprint=b"", version=2)
    s = server()
    with pytest.raises(
        call.HandshakeError,
        match="this server speaks call protocol version 1; the client speaks version 2",
    ):
        s.receive_data(c.hello())


# ------------------------------------------------------------------ the table


def test_transition_table_drives_the_states() -> None:
    for (role, state, direction, event), target in _protocol.TRANSITIONS.items():
        assert isinstance(role, Role) and isinstance(state, State)
        assert target in State
    assert (Role.CLIENT, State.IDLE, _protocol.Direction.SEND, Request) not in _protocol.TRANSITIONS


def test_missing_pairs_are_protocol_errors() -> None:
    c = client()
    with pytest.raises(call.LocalProtocolError):
        c.send_request(1, KEY, 0, b"")  # before the handshake
    s = server()
    with pytest.raises(call.LocalProtocolError):
        s.send_response(1, b"")  # before the handshake
    c, s = open_pair()
    with pytest.raises(call.LocalProtocolError):
        s.send_request(1, KEY, 0, b"")  # servers do not send requests
    with pytest.raises(call.LocalProtocolError):
        s.send_response(99, b"")  # never received
    with pytest.raises(call.RemoteProtocolError):
        s.receive_data(_wire.frame_header(1, _wire.RESPONSE, 0))
    assert s.state is State.FAILED
    c, s = open_pair()
    with pytest.raises(call.RemoteProtocolError, match="not in flight"):
        c.receive_data(_wire.frame_header(5, _wire.RESPONSE, 0))
    c, s = open_pair()
    s.receive_data(c.send_request(1, KEY, 0, b""))
    with pytest.raises(call.RemoteProtocolError, match="already in flight"):
        s.receive_data(_wire.encode_request(1, KEY, 0, b""))
    c, s = open_pair()
    with pytest.raises(call.RemoteProtocolError, match="unknown frame type"):
        s.receive_data(_wire.frame_header(1, 9, 0))
    c, s = open_pair()
    with pytest.raises(call.RemoteProtocolError):
        s.receive_data(_wire.frame_header(0, _wire.HANDSHAKE, 0))  # a second handshake
    # After a remote error, only a goodbye may be sent; then nothing at all.
    with pytest.raises(call.LocalProtocolError):
        s.send_response(1, b"")
    s.goodbye("protocol", "bye")
    with pytest.raises(call.RemoteProtocolError):
        s.receive_data(b"more")
    with pytest.raises(call.LocalProtocolError):
        s.goodbye("protocol", "again")


def test_frame_cap_is_checked_before_the_body_arrives() -> None:
    c, s = open_pair(max_frame=1024)
    header = struct.pack("<QQ", 1, _wire.REQUEST | (1025 << 8))
    with pytest.raises(call.RemoteProtocolError) as caught:
        s.receive_data(header)  # the header alone is enough to refuse
    assert caught.value.code == "frame-too-large"
    assert s.buffered == 0
    # Exactly the cap is fine.
    c, s = open_pair(max_frame=1024)
    frame = c.send_request(1, KEY, 0, b"x" * (1024 - 25))
    s.receive_data(frame[:-1])
    assert s.buffered == len(frame) - 1
    [event] = s.receive_data(frame[-1:])
    assert len(event.payload) == 1024 - 25  # type: ignore[union-attr]


def test_malformed_request_headers() -> None:
    bad_bodies = [
        b"short",
        KEY + struct.pack("<QB", 0, 0x80),  # unknown flag
        KEY + struct.pack("<QB", 0, _wire.FLAG_TRACESTATE),  # tracestate without trace
        KEY + struct.pack("<QB", 0, _wire.FLAG_TRACE) + b"\x00" * 5,  # truncated trace
        KEY + struct.pack("<QBI", 0, _wire.FLAG_METADATA, 50) + b"\xa0",  # truncated metadata
        KEY + struct.pack("<QBI", 0, _wire.FLAG_METADATA, 1) + b"\xff",  # not CBOR
        KEY + struct.pack("<QBI", 0, _wire.FLAG_METADATA, 3) + cbor2.dumps({1: 2}),
    ]
    for body in bad_bodies:
        _c, s = open_pair()
        frame = _wire.frame_header(1, _wire.REQUEST, len(body)) + body
        with pytest.raises(call.RemoteProtocolError):
            s.receive_data(frame)
        assert s.state is State.FAILED


# ------------------------------------------------------------------ purity


def test_the_state_machine_imports_no_io() -> None:
    """_protocol and _wire (and what they import from pyweaver) stay free of I/O."""
    root = pathlib.Path(_protocol.__file__).parent
    banned = {"asyncio", "anyio", "trio", "sniffio", "socket", "selectors", "uvloop", "threading"}
    for name in ["_protocol.py", "_wire.py", "../_errors.py"]:
        tree = ast.parse((root / name).read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert not imported & banned, (name, imported & banned)


# ------------------------------------------------------------------ fuzzing


def _valid_stream() -> tuple[bytes, bytes]:
    """A valid client->server byte stream and a valid server->client one."""
    c2, s2 = client(), server()
    to_server = c2.hello()
    s2.receive_data(to_server)
    to_client = s2.hello()
    c2.receive_data(to_client)
    trace = call.TraceContext(b"\x01" * 16, b"\x02" * 8, 1, "a=b")
    for i in range(1, 6):
        frame = c2.send_request(
            i,
            KEY,
            i * 1000,
            b"p" * i,
            trace=trace if i % 2 else None,
            metadata={"k": str(i)} if i % 3 else None,
        )
        to_server += frame
        s2.receive_data(frame)
    cancel = c2.send_cancel(2)
    to_server += cancel
    s2.receive_data(cancel)
    for i in range(1, 6):
        answer = s2.send_response(i, b"r" * i) if i % 2 else s2.send_error(i, "internal", "boom")
        to_client += answer
    return to_server, to_client


VALID_TO_SERVER, VALID_TO_CLIENT = _valid_stream()
CAP = 4096


def _feed(connection: Connection, data: bytes, cuts: list[int]) -> None:
    pieces = []
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    try:
        for piece in pieces:
            if not piece:
                continue
            for event in connection.receive_data(piece):
                # Act as a driver would: the server answers the handshake.
                if isinstance(event, Handshake) and connection.role is Role.SERVER:
                    connection.hello()
            assert connection.buffered <= CAP + _wire.HEADER_SIZE
        connection.receive_data(b"")
    except call.RemoteProtocolError:
        assert connection.state in (State.FAILED, State.CLOSED)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[pos:]
        else:  # rewrite some 8 bytes as a huge or odd frame word
            word = draw(st.sampled_from([(1 << 63) | 1, (CAP + 1) << 8 | 1, 0xFF, (1 << 56) - 1]))
            data[pos : pos + 8] = struct.pack("<Q", word)
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512), cuts=st.lists(st.integers(0, 1 << 16), max_size=6))
def test_fuzz_random_bytes(data: bytes, cuts: list[int]) -> None:
    _feed(server(max_frame=CAP), data, cuts)
    c = client(max_frame=CAP)
    c.hello()
    _feed(c, data, cuts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    to_server=mutated(VALID_TO_SERVER),
    to_client=mutated(VALID_TO_CLIENT),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
)
def test_fuzz_mutated_streams(to_server: bytes, to_client: bytes, cuts: list[int]) -> None:
    _feed(server(max_frame=CAP), to_server, cuts)
    _feed(client_that_sent_the_requests(), to_client, cuts)


def client_that_sent_the_requests() -> Connection:
    c = client(max_frame=CAP)
    c.hello()
    hello_size = len(client().hello())  # the same bytes as the server's hello
    c.receive_data(VALID_TO_CLIENT[:hello_size])
    for i in range(1, 6):
        c.send_request(i, KEY, 0, b"")
    c.send_cancel(2)
    # Keep only the answers: the fuzzer feeds the server's hello again (to a client in
    # OPEN that is a protocol error), so strip it from the stream handed over.
    return _Replay(c, hello_size)  # type: ignore[return-value]


class _Replay:
    """A client connection whose stream starts after the server's hello."""

    def __init__(self, connection: Connection, skip: int) -> None:
        self._connection = connection
        self._skip = skip

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def receive_data(self, data: bytes) -> list[object]:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
            if not data:
                return []
        return self._connection.receive_data(data)  # type: ignore[return-value]


def test_unmutated_streams_are_accepted() -> None:
    s = server(max_frame=CAP)
    hello_size = len(client().hello())
    assert len(s.receive_data(VALID_TO_SERVER[:hello_size])) == 1
    s.hello()
    events = s.receive_data(VALID_TO_SERVER[hello_size:])
    assert [type(e) for e in events] == [Request] * 5 + [Cancel]
    c = client_that_sent_the_requests()
    events = c.receive_data(VALID_TO_CLIENT)
    assert [type(e) for e in events] == [Response, Error, Response, Error, Response]


def test_a_pipelining_client_is_refused() -> None:
    # Requests must wait for the server's handshake.
    s = server()
    with pytest.raises(call.RemoteProtocolError, match="HANDSHAKE_RECEIVED received Request"):
        s.receive_data(VALID_TO_SERVER)
