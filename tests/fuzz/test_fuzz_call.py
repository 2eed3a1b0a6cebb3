"""Fuzzing the call server's and client's sans-IO protocol (``call/_protocol.py``).

Whatever bytes arrive, in whatever pieces, a :class:`Connection` only ever returns
events or raises :class:`RemoteProtocolError` (then it is ``FAILED``), and never holds
more than one frame's cap (plus its 16-byte header) of an incomplete frame: the small
handshake cap until it is ``OPEN``, ``max_frame`` after.
"""

from __future__ import annotations

import struct

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from pyweaver import call
from pyweaver.call import _wire
from pyweaver.call._protocol import Connection, Request, Role, State

from ._profile import fuzz_settings

DEPLOYMENT = "fuzz"
FINGERPRINT = b"\x01\x02\x03\x04"
KEY = call.method_key("app.Fuzz", "method")
HANDSHAKE_CAP = 256
CAP = 4096


def connection(role: Role) -> Connection:
    return Connection(
        role,
        deployment_id=DEPLOYMENT,
        fingerprint=FINGERPRINT,
        max_frame=CAP,
        max_handshake_frame=HANDSHAKE_CAP,
    )


def feed(core: Connection, data: bytes, cuts: list[int]) -> None:
    """Feed ``data`` cut at ``cuts``, answering as a driver would; check the invariants."""
    pieces, last = [], 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    try:
        for piece in pieces:
            if not piece:
                continue
            for event in core.receive_data(piece):
                if isinstance(event, call.Handshake) and core.role is Role.SERVER:
                    core.hello()
                elif isinstance(event, Request):
                    core.send_response(event.request_id, event.payload)
            cap = CAP if core.state is State.OPEN else HANDSHAKE_CAP
            assert core.buffered <= cap + _wire.HEADER_SIZE
        core.receive_data(b"")
    except call.RemoteProtocolError:
        assert core.state in (State.FAILED, State.CLOSED)


def valid_streams() -> tuple[bytes, bytes]:
    c, s = connection(Role.CLIENT), connection(Role.SERVER)
    to_server = c.hello()
    s.receive_data(to_server)
    to_client = s.hello()
    c.receive_data(to_client)
    trace = call.TraceContext(b"\x01" * 16, b"\x02" * 8, 1, "a=b")
    for i in range(1, 6):
        frame = c.send_request(
            i,
            KEY,
            i * 1000,
            b"p" * i,
            trace=trace if i % 2 else None,
            metadata={"k": str(i)} if i % 3 else None,
        )
        to_server += frame
        s.receive_data(frame)
    to_server += c.send_cancel(2)
    for i in range(1, 6):
        to_client += s.send_response(i, b"r" * i) if i % 2 else s.send_error(i, "internal", "x")
    return to_server, to_client


TO_SERVER, TO_CLIENT = valid_streams()
HELLO = connection(Role.CLIENT).hello()
cuts = st.lists(st.integers(0, 1 << 16), max_size=6)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "word"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[pos:]
        else:  # a frame word announcing a huge, odd or just-too-big frame
            word = draw(
                st.sampled_from(
                    [
                        (1 << 63) | 1,
                        (CAP + 1) << 8 | 1,
                        (HANDSHAKE_CAP + 1) << 8,
                        0xFF,
                        (1 << 56) - 1,
                        (95 << 20) << 8,
                    ]
                )
            )
            data[pos : pos + 8] = struct.pack("<Q", word)
    return bytes(data)


# CBOR values with tags in them, as a hostile peer would put in a handshake or metadata.
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 4, 5, 28, 29, 30, 35, 36, 258]), inner)
    ),
    max_leaves=12,
)


def cbor_or_garbage(value: object) -> bytes:
    try:
        return cbor2.dumps(value)
    except Exception:
        return b"\xff"


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A stream of well-framed frames with hostile bodies."""
    out = b""
    for _ in range(draw(st.integers(1, 6))):
        frame_type = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 0xFF]))
        request_id = draw(st.sampled_from([0, 1, 2, (1 << 64) - 1]))
        kind = draw(st.sampled_from(["cbor", "bytes", "handshake", "request"]))
        if kind == "cbor":
            body = cbor_or_garbage(draw(cbor_values))
        elif kind == "bytes":
            body = draw(st.binary(max_size=300))
        elif kind == "handshake":
            body = struct.pack("<I", draw(st.sampled_from([1, 2]))) + cbor_or_garbage(
                draw(cbor_values)
            )
        else:
            metadata = cbor_or_garbage(draw(cbor_values))
            flags = draw(st.integers(0, 255))
            body = KEY + struct.pack("<QBI", 0, flags, len(metadata)) + metadata
        out += _wire.frame_header(request_id, frame_type, len(body)) + body
    return out


@fuzz_settings()
@given(data=st.binary(max_size=1024), cuts=cuts)
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    feed(connection(Role.SERVER), data, cuts)
    client = connection(Role.CLIENT)
    client.hello()
    feed(client, data, cuts)


@fuzz_settings()
@given(data=mutated(TO_SERVER), cuts=cuts)
def test_mutated_client_streams_to_a_server(data: bytes, cuts: list[int]) -> None:
    feed(connection(Role.SERVER), data, cuts)


@fuzz_settings()
@given(data=mutated(TO_CLIENT), cuts=cuts)
def test_mutated_server_streams_to_a_client(data: bytes, cuts: list[int]) -> None:
    client = connection(Role.CLIENT)
    client.hello()
    # The client that sent TO_SERVER's requests: its hello, then requests 1..5.
    hello_size = len(HELLO)
    if data[:hello_size] == TO_CLIENT[:hello_size]:
        client.receive_data(data[:hello_size])
        for i in range(1, 6):
            client.send_request(i, KEY, 0, b"")
        data = data[hello_size:]
    feed(client, data, cuts)


@fuzz_settings()
@given(before=frames(), after=frames(), cuts=cuts)
def test_hostile_frames_before_and_after_the_handshake(
    before: bytes, after: bytes, cuts: list[int]
) -> None:
    feed(connection(Role.SERVER), before, cuts)
    feed(connection(Role.SERVER), HELLO + after, cuts)
