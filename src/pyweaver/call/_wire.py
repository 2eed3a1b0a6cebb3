"""The bytes of the call protocol: frame layout, message bodies, and their codecs.

Everything here is pure (``struct`` and ``cbor2``, no I/O). :mod:`._protocol` uses it to
turn bytes into events and events into bytes.

Frames
======

Every message, in both directions, is one frame: a 16-byte header and a body. The
header is Service Weaver's (``weaver:internal/net/call/msg.go``)::

    offset 0   request id   u64 little-endian   0 for connection-level frames
    offset 8   word         u64 little-endian   low 8 bits: frame type
                                                high 56 bits: body length in bytes
    offset 16  body         [length] bytes

A receiver checks the body length against its cap as soon as it has the header, before
it buffers any of the body: ``max_handshake_frame`` (default 64 KiB) until the handshake
is complete, ``max_frame`` (default 100 MiB) after. Every CBOR item below is decoded
strictly (:mod:`._cbor`): no CBOR tags, nesting bounded.

========  ==========  =======================================================
type      name        body
========  ==========  =======================================================
0         HANDSHAKE   u32 LE protocol version, then CBOR ``[deployment id (text),
                      app fingerprint (bytes)]``. Request id 0. Each side sends one
                      first (the client, then the server in reply); peers of another
                      version, deployment or fingerprint refuse each other.
1         REQUEST     the request header below, then the payload (opaque bytes)
2         RESPONSE    the payload (opaque bytes: the runtime's codec encodes the
                      method's result or application exception)
3         ERROR       CBOR ``[kind (text), message (text)]``: a *system* failure of the
                      request (unknown method, replica not ready, handler crashed,
                      cancelled, deadline exceeded). With request id 0 it is a
                      *goodbye*: the sender is closing the whole connection and says why.
4         CANCEL      empty: the client no longer wants the answer to this request
========  ==========  =======================================================

Request ids are chosen by the client, are never 0 and are unique among the requests
in flight on a connection. Every request is answered by exactly one RESPONSE or
ERROR, even a cancelled one (with the ``cancelled`` error).

Request header
==============

::

    offset 0   method key   16 bytes            sha256(f"{component}.{method}")[:16]
    offset 16  deadline     u64 LE              microseconds the caller has left; 0 = none
    offset 24  flags        u8                  bit 0: trace context follows
                                                bit 1: tracestate follows (needs bit 0)
                                                bit 2: metadata follows
                                                other bits: must be 0
    [bit 0]    trace id 16 bytes, span id 8 bytes, trace flags 1 byte (W3C)
    [bit 1]    u16 LE length, then that many bytes of W3C ``tracestate`` (ASCII)
    [bit 2]    u32 LE length, then a CBOR map of text to text (``weaver.metadata``)
    the rest   the payload

Worked example
==============

A call of ``app.Reverser.reverse`` with request id 1, 250 ms left, no trace and no
metadata, whose payload is the CBOR array ``["abc"]`` (``81 63 61 62 63``)::

    method key = af5a0af48411350720f8ac63db34d254
    request    = 0100000000000000                   request id 1
                 011e000000000000                   type 1 (REQUEST), body length 0x1e = 30
                 af5a0af48411350720f8ac63db34d254   method key
                 90d0030000000000                   deadline 250000 µs
                 00                                 flags: nothing optional
                 8163616263                         payload
    response   = 0100000000000000 0205000000000000 8163636261      payload ["cba"]
    error      = 0100000000000000 0318000000000000
                 82 6e 756e6b6e6f776e2d6d6574686f64 67 6d697373696e67
                                                    ["unknown-method", "missing"]
    cancel     = 0100000000000000 0400000000000000
    handshake  = 0000000000000000 0012000000000000 01000000
                 82 61 41 4a 30313233343536373839   version 1, ["A", b"0123456789"]

The frame header and the fixed part of the request header are ``struct``-packed, so
the common call (no trace, no metadata) costs one ``pack`` and no CBOR at all.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Final, NamedTuple

import cbor2

from pyweaver._errors import RemoteProtocolError
from pyweaver.call import _cbor

__all__ = [
    "CANCEL",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_HANDSHAKE_FRAME",
    "ERROR",
    "HANDSHAKE",
    "HEADER",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "REQUEST",
    "RESPONSE",
    "TraceContext",
    "decode_error",
    "decode_handshake",
    "decode_request",
    "encode_error",
    "encode_handshake",
    "encode_request",
    "method_key",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 100 << 20
# Before the handshake a peer is a stranger: it may only make us buffer this much.
DEFAULT_MAX_HANDSHAKE_FRAME: Final = 64 << 10

HANDSHAKE: Final = 0
REQUEST: Final = 1
RESPONSE: Final = 2
ERROR: Final = 3
CANCEL: Final = 4
FRAME_TYPE_NAMES: Final = {
    HANDSHAKE: "HANDSHAKE",
    REQUEST: "REQUEST",
    RESPONSE: "RESPONSE",
    ERROR: "ERROR",
    CANCEL: "CANCEL",
}

HEADER: Final = struct.Struct("<QQ")
HEADER_SIZE: Final = HEADER.size
MAX_BODY: Final = (1 << 56) - 1

METHOD_KEY_SIZE: Final = 16
REQUEST_FIXED: Final = struct.Struct("<16sQB")
REQUEST_FIXED_SIZE: Final = REQUEST_FIXED.size
# Header + fixed request header in one pack: the whole prefix of a plain request frame.
_REQUEST_PREFIX: Final = struct.Struct("<QQ16sQB")
_TRACE: Final = struct.Struct("<16s8sB")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")

FLAG_TRACE: Final = 0x01
FLAG_TRACESTATE: Final = 0x02
FLAG_METADATA: Final = 0x04
_KNOWN_FLAGS: Final = FLAG_TRACE | FLAG_TRACESTATE | FLAG_METADATA
MAX_DEADLINE_US: Final = (1 << 64) - 1


class TraceContext(NamedTuple):
    """A W3C trace context as carried by a request (``traceparent`` plus ``tracestate``)."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    flags: int  # the trace-flags byte (bit 0: sampled)
    state: str = ""  # the tracestate header value, "" when absent


def method_key(component: str, method: str) -> bytes:
    """The 16-byte key a request names its method by: ``sha256(f"{component}.{method}")[:16]``."""
    return hashlib.sha256(f"{component}.{method}".encode()).digest()[:METHOD_KEY_SIZE]


def frame_header(request_id: int, frame_type: int, length: int) -> bytes:
    return HEADER.pack(request_id, frame_type | (length << 8))


# ------------------------------------------------------------------ handshake


def encode_handshake(version: int, deployment_id: str, fingerprint: bytes) -> bytes:
    return _U32.pack(version) + cbor2.dumps([deployment_id, fingerprint])


def decode_handshake(body: bytes) -> tuple[int, str, bytes]:
    """(version, deployment id, fingerprint). A peer of another version may use another
    layout after the version, so only the version is guaranteed to decode."""
    if len(body) < 4:
        raise RemoteProtocolError("handshake body shorter than 4 bytes", code="bad-handshake")
    (version,) = _U32.unpack_from(body)
    if version != PROTOCOL_VERSION:
        return version, "", b""
    try:
        decoded = _cbor.loads(body[4:])
    except _cbor.DecodeError as exc:
        raise RemoteProtocolError(
            f"handshake body is not valid CBOR: {exc}", code="bad-handshake"
        ) from exc
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], str)
        or not isinstance(decoded[1], bytes)
    ):
        raise RemoteProtocolError(
            "handshake body is not [deployment id, fingerprint]", code="bad-handshake"
        )
    return version, decoded[0], decoded[1]


# ------------------------------------------------------------------ requests


def encode_request(
    request_id: int,
    key: bytes,
    deadline_us: int,
    payload: bytes,
    *,
    trace: TraceContext | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The whole REQUEST frame (header included)."""
    if trace is None and not metadata:
        length = REQUEST_FIXED_SIZE + len(payload)
        return (
            _REQUEST_PREFIX.pack(request_id, REQUEST | (length << 8), key, deadline_us, 0) + payload
        )
    flags = 0
    parts: list[bytes] = []
    if trace is not None:
        flags |= FLAG_TRACE
        parts.append(_TRACE.pack(trace.trace_id, trace.span_id, trace.flags))
        if trace.state:
            flags |= FLAG_TRACESTATE
            state = trace.state.encode("ascii")
            parts.append(_U16.pack(len(state)))
            parts.append(state)
    if metadata:
        flags |= FLAG_METADATA
        encoded = cbor2.dumps(dict(metadata))
        parts.append(_U32.pack(len(encoded)))
        parts.append(encoded)
    optional = b"".join(parts)
    length = REQUEST_FIXED_SIZE + len(optional) + len(payload)
    return (
        _REQUEST_PREFIX.pack(request_id, REQUEST | (length << 8), key, deadline_us, flags)
        + optional
        + payload
    )


def decode_request(
    body: bytes,
) -> tuple[bytes, int, TraceContext | None, dict[str, str] | None, bytes]:
    """(method key, deadline µs, trace context, metadata, payload) of a REQUEST body."""
    if len(body) < REQUEST_FIXED_SIZE:
        raise RemoteProtocolError(
            f"request body of {len(body)} bytes is shorter than its "
            f"{REQUEST_FIXED_SIZE}-byte header",
            code="bad-request",
        )
    key, deadline_us, flags = REQUEST_FIXED.unpack_from(body)
    if not flags:
        return key, deadline_us, None, None, body[REQUEST_FIXED_SIZE:]
    if flags & ~_KNOWN_FLAGS:
        raise RemoteProtocolError(f"unknown request flags 0x{flags:02x}", code="bad-request")
    pos = REQUEST_FIXED_SIZE
    trace: TraceContext | None = None
    metadata: dict[str, str] | None = None
    try:
        if flags & FLAG_TRACE:
            trace_id, span_id, trace_flags = _TRACE.unpack_from(body, pos)
            pos += _TRACE.size
            state = ""
            if flags & FLAG_TRACESTATE:
                (n,) = _U16.unpack_from(body, pos)
                pos += 2
                if pos + n > len(body):
                    raise RemoteProtocolError("truncated tracestate", code="bad-request")
                state = body[pos : pos + n].decode("ascii")
                pos += n
            trace = TraceContext(trace_id, span_id, trace_flags, state)
        elif flags & FLAG_TRACESTATE:
            raise RemoteProtocolError("tracestate without trace context", code="bad-request")
        if flags & FLAG_METADATA:
            (n,) = _U32.unpack_from(body, pos)
            pos += 4
            if pos + n > len(body):
                raise RemoteProtocolError("truncated metadata", code="bad-request")
            metadata = _decode_metadata(body[pos : pos + n])
            pos += n
    except struct.error as exc:
        raise RemoteProtocolError(f"truncated request header: {exc}", code="bad-request") from exc
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"tracestate is not ASCII: {exc}", code="bad-request") from exc
    return key, deadline_us, trace, metadata, body[pos:]


_load_metadata: Final = _cbor.decoder(max_depth=2, strict_keys=True)


def _decode_metadata(encoded: bytes) -> dict[str, str]:
    try:
        decoded = _load_metadata(encoded)
    except _cbor.DecodeError as exc:
        raise RemoteProtocolError(f"metadata is not valid CBOR: {exc}", code="bad-request") from exc
    if not isinstance(decoded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()
    ):
        raise RemoteProtocolError("metadata is not a map of text to text", code="bad-request")
    return decoded


# ------------------------------------------------------------------ errors


def encode_error(kind: str, message: str) -> bytes:
    return cbor2.dumps([kind, message])


def decode_error(body: bytes) -> tuple[str, str]:
    try:
        decoded = _cbor.loads(body)
    except _cbor.DecodeError as exc:
        raise RemoteProtocolError(f"error body is not valid CBOR: {exc}", code="bad-error") from exc
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], str)
        or not isinstance(decoded[1], str)
    ):
        raise RemoteProtocolError("error body is not [kind, message]", code="bad-error")
    return decoded[0], decoded[1]
