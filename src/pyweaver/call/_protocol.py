"""The call protocol as a pure state machine (sans-IO): bytes in, events out;
events in, bytes out.

A :class:`Connection` knows nothing about sockets, tasks or clocks. A driver feeds it
whatever bytes arrived (:meth:`Connection.receive_data`, ``b""`` for end of stream) and
gets back a list of events; to say something, the driver passes an event to
:meth:`Connection.send` (or one of the ``send_*`` fast paths) and writes the bytes it
returns. The wire format is in :mod:`._wire`.

Theory of operation
===================

The connection's life is the table :data:`TRANSITIONS`: ``(role, state, direction,
event type) -> next state``. A pair missing from the table is a protocol error: a
:class:`~pyweaver._errors.RemoteProtocolError` when the peer sent it, a
:class:`~pyweaver._errors.LocalProtocolError` when we tried to send it. After a remote
protocol error the connection is ``FAILED``: the only thing left to send is a
:class:`Goodbye` explaining why, and the driver closes the connection. Nothing else
(in particular, no other connection) is affected.

::

    client: IDLE --send Handshake--> AWAIT_HANDSHAKE --recv Handshake--> OPEN
    server: IDLE --recv Handshake--> HANDSHAKE_RECEIVED --send Handshake--> OPEN
    OPEN:   client sends Request, Cancel;    receives Response, Error
            server receives Request, Cancel; sends Response, Error
    any:    send or receive Goodbye, or end of stream --> CLOSED

Besides the connection state, each side tracks the request ids in flight: a client may
not reuse an id in flight and rejects answers to ids it never sent (or already had
answered); a server rejects a second request with an id in flight and may answer each
request once. A CANCEL for an id the server already answered is a harmless race and
yields no event.

Frame lengths are checked as soon as a header is complete, before any of the body is
buffered: against ``max_handshake_frame`` (64 KiB) until the connection is ``OPEN``,
against ``max_frame`` after. So a peer that has not completed a handshake can make the
connection hold at most ``max_handshake_frame + 16`` bytes of an incomplete frame, and
one that has, ``max_frame + 16``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, NamedTuple

from pyweaver._errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from pyweaver.call import _wire
from pyweaver.call._wire import (
    CANCEL,
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_HANDSHAKE_FRAME,
    ERROR,
    HANDSHAKE,
    HEADER,
    HEADER_SIZE,
    MAX_BODY,
    MAX_DEADLINE_US,
    PROTOCOL_VERSION,
    REQUEST,
    REQUEST_FIXED,
    REQUEST_FIXED_SIZE,
    RESPONSE,
    TraceContext,
)

__all__ = [
    "TRANSITIONS",
    "Cancel",
    "Connection",
    "ConnectionClosed",
    "Error",
    "Event",
    "Goodbye",
    "Handshake",
    "HandshakeError",
    "ReadBytes",
    "Request",
    "Response",
    "Role",
    "State",
]


#: What a driver feeds :meth:`Connection.receive_data`: the bytes one read returned,
#: possibly a view of a buffer the driver reuses for its next read.
ReadBytes = bytes | bytearray | memoryview

# ------------------------------------------------------------------ events


class Handshake(NamedTuple):
    """The first frame each side sends: who it is."""

    version: int
    deployment_id: str
    fingerprint: bytes


class Request(NamedTuple):
    """A call: ``payload`` for the method named by ``method_key``."""

    request_id: int
    method_key: bytes
    deadline_us: int  # microseconds the caller had left when it sent this; 0 = none
    trace: TraceContext | None
    metadata: Mapping[str, str] | None
    payload: bytes


class Response(NamedTuple):
    """The answer to a request: the handler's payload (results or app exception)."""

    request_id: int
    payload: bytes


class Error(NamedTuple):
    """A system failure of one request (see :mod:`._kinds` for the kinds)."""

    request_id: int
    kind: str
    message: str


class Cancel(NamedTuple):
    """The client no longer wants the answer to this request."""

    request_id: int


class Goodbye(NamedTuple):
    """The sender is closing the whole connection, and says why (an ERROR frame with
    request id 0)."""

    kind: str
    message: str


class ConnectionClosed(NamedTuple):
    """The peer closed its end of the stream cleanly (between frames)."""


Event = Handshake | Request | Response | Error | Cancel | Goodbye | ConnectionClosed


# ------------------------------------------------------------------ the table


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    IDLE = "IDLE"  # nothing exchanged yet
    AWAIT_HANDSHAKE = "AWAIT_HANDSHAKE"  # client: sent its handshake, awaits the server's
    HANDSHAKE_RECEIVED = "HANDSHAKE_RECEIVED"  # server: got an acceptable handshake
    OPEN = "OPEN"  # calls flow
    FAILED = "FAILED"  # the peer broke the protocol: say Goodbye, then close
    CLOSED = "CLOSED"  # done; nothing more may be sent or received


class Direction(enum.Enum):
    SEND = "send"
    RECEIVE = "receive"


CLIENT, SERVER = Role.CLIENT, Role.SERVER
SEND, RECEIVE = Direction.SEND, Direction.RECEIVE
IDLE, AWAIT_HANDSHAKE, HANDSHAKE_RECEIVED, OPEN, FAILED, CLOSED = (
    State.IDLE,
    State.AWAIT_HANDSHAKE,
    State.HANDSHAKE_RECEIVED,
    State.OPEN,
    State.FAILED,
    State.CLOSED,
)

TRANSITIONS: Final[Mapping[tuple[Role, State, Direction, type[Event]], State]] = {
    # client
    (CLIENT, IDLE, SEND, Handshake): AWAIT_HANDSHAKE,
    (CLIENT, AWAIT_HANDSHAKE, RECEIVE, Handshake): OPEN,
    (CLIENT, OPEN, SEND, Request): OPEN,
    (CLIENT, OPEN, SEND, Cancel): OPEN,
    (CLIENT, OPEN, RECEIVE, Response): OPEN,
    (CLIENT, OPEN, RECEIVE, Error): OPEN,
    # server
    (SERVER, IDLE, RECEIVE, Handshake): HANDSHAKE_RECEIVED,
    (SERVER, HANDSHAKE_RECEIVED, SEND, Handshake): OPEN,
    (SERVER, OPEN, RECEIVE, Request): OPEN,
    (SERVER, OPEN, RECEIVE, Cancel): OPEN,
    (SERVER, OPEN, SEND, Response): OPEN,
    (SERVER, OPEN, SEND, Error): OPEN,
    # either side, any live state: close the connection with a reason, or hear one
    **{
        (role, state, direction, Goodbye): CLOSED
        for role in Role
        for state in (IDLE, AWAIT_HANDSHAKE, HANDSHAKE_RECEIVED, OPEN)
        for direction in Direction
    },
    **{
        (role, state, RECEIVE, ConnectionClosed): CLOSED
        for role in Role
        for state in (IDLE, AWAIT_HANDSHAKE, HANDSHAKE_RECEIVED, OPEN)
    },
    (CLIENT, FAILED, SEND, Goodbye): CLOSED,
    (SERVER, FAILED, SEND, Goodbye): CLOSED,
}

_FRAME_EVENT: Final[Mapping[int, type[Event]]] = {
    HANDSHAKE: Handshake,
    REQUEST: Request,
    RESPONSE: Response,
    ERROR: Error,
    CANCEL: Cancel,
}


_MAX_U64: Final = (1 << 64) - 1


def _hex(fingerprint: bytes) -> str:
    text = fingerprint.hex()
    return text if len(text) <= 16 else text[:16] + "..."


# ------------------------------------------------------------------ the machine


class Connection:
    """One end of one call-protocol connection.

    Args:
        role: ``Role.CLIENT`` (sends requests) or ``Role.SERVER`` (answers them).
        deployment_id: this side's deployment; the peer must be of the same one.
        fingerprint: this side's app schema fingerprint; the peer's must be equal.
        max_frame: the largest frame body accepted from the peer, in bytes, once the
            connection is open.
        max_handshake_frame: the largest accepted before that (the handshake).
    """

    __slots__ = (
        "_buffer",
        "_in_flight",
        "_role",
        "_state",
        "deployment_id",
        "fingerprint",
        "max_frame",
        "max_handshake_frame",
        "peer",
        "version",
    )

    def __init__(
        self,
        role: Role,
        *,
        deployment_id: str,
        fingerprint: bytes,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_handshake_frame: int = DEFAULT_MAX_HANDSHAKE_FRAME,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        if not 0 < max_frame <= MAX_BODY:
            raise ValueError(f"max_frame must be in 1..{MAX_BODY}, got {max_frame}")
        if not 0 < max_handshake_frame <= MAX_BODY:
            raise ValueError(
                f"max_handshake_frame must be in 1..{MAX_BODY}, got {max_handshake_frame}"
            )
        self._role = role
        self.deployment_id = deployment_id
        self.fingerprint = bytes(fingerprint)
        self.max_frame = max_frame
        self.max_handshake_frame = max_handshake_frame
        self.version = version
        self.peer: Handshake | None = None
        self._buffer = bytearray()
        self._in_flight: set[int] = set()
        self._state = IDLE

    # -------------------------------------------------------------- state

    @property
    def role(self) -> Role:
        return self._role

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events (part of one frame)."""
        return len(self._buffer)

    @property
    def unanswered(self) -> int:
        """How many requests are in flight (see :attr:`in_flight`)."""
        return len(self._in_flight)

    @property
    def in_flight(self) -> frozenset[int]:
        """Request ids sent (client) or received (server) and not yet answered."""
        return frozenset(self._in_flight)

    def _enter(self, state: State) -> None:
        self._state = state

    def _transition(self, direction: Direction, event_type: type[Event]) -> None:
        try:
            new_state = TRANSITIONS[(self._role, self._state, direction, event_type)]
        except KeyError:
            what = f"{self._role.value} in state {self._state.value}"
            if direction is SEND:
                raise LocalProtocolError(
                    f"{what} may not send {event_type.__name__}", code="bad-state"
                ) from None
            self._fail()
            raise RemoteProtocolError(
                f"{what} received {event_type.__name__}, which is not allowed here",
                code="unexpected-frame",
            ) from None
        if new_state is not self._state:
            self._enter(new_state)

    def _fail(self) -> None:
        self._buffer = bytearray()
        self._enter(FAILED)

    def _remote_error(self, message: str, code: str) -> RemoteProtocolError:
        self._fail()
        return RemoteProtocolError(message, code=code)

    # -------------------------------------------------------------- receiving

    def receive_data(self, data: ReadBytes) -> list[Event]:
        """Feed bytes from the peer (``b""`` = end of stream); returns the events they
        complete, in order. ``data`` may be a view of a buffer the caller reuses: what
        the connection keeps of it (payloads, a partial frame) is copied before this
        returns. Raises :class:`RemoteProtocolError` when the peer broke the
        protocol (and the connection is then ``FAILED``)."""
        if self._state is FAILED or self._state is CLOSED:
            raise RemoteProtocolError(
                f"connection is {self._state.value}; no more data is accepted",
                code="closed",
            )
        if not data:
            if self._buffer:
                raise self._remote_error(
                    f"stream ended in the middle of a frame ({len(self._buffer)} bytes buffered)",
                    "truncated-frame",
                )
            self._transition(RECEIVE, ConnectionClosed)
            return [ConnectionClosed()]

        buffer = self._buffer
        view: ReadBytes
        if buffer:
            buffer += data
            view = buffer
        else:
            view = data
        size = len(view)
        pos = 0
        events: list[Event] = []
        append = events.append
        unpack_header = HEADER.unpack_from
        unpack_request = REQUEST_FIXED.unpack_from
        max_frame = self.max_frame if self._state is OPEN else self.max_handshake_frame
        in_flight = self._in_flight
        client = self._role is CLIENT
        while size - pos >= HEADER_SIZE:
            request_id, word = unpack_header(view, pos)
            frame_type = word & 0xFF
            length = word >> 8
            if length > max_frame:
                raise self._remote_error(
                    f"frame of {length} bytes exceeds the {max_frame}-byte limit",
                    "frame-too-large",
                )
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            start = pos + HEADER_SIZE
            pos = end
            # Fast paths for the two frames of every call. They agree with TRANSITIONS
            # (OPEN stays OPEN); anything else goes through the table, which raises.
            if frame_type == RESPONSE:
                if self._state is not OPEN or not client:
                    self._reject(frame_type)
                if request_id not in in_flight:
                    raise self._remote_error(
                        f"response to request {request_id}, which is not in flight",
                        "unknown-request",
                    )
                in_flight.remove(request_id)
                append(Response(request_id, _copy(view, start, end)))
                continue
            if frame_type == REQUEST:
                if self._state is not OPEN or client:
                    self._reject(frame_type)
                if request_id == 0 or request_id in in_flight:
                    raise self._remote_error(
                        f"request id {request_id} is 0 or already in flight",
                        "duplicate-request",
                    )
                if length >= REQUEST_FIXED_SIZE:
                    key, deadline_us, flags = unpack_request(view, start)
                    if not flags:  # the common request: the payload is copied once
                        in_flight.add(request_id)
                        payload = _copy(view, start + REQUEST_FIXED_SIZE, end)
                        append(Request(request_id, key, deadline_us, None, None, payload))
                        continue
                key, deadline_us, trace, metadata, payload = _decode_request(
                    self, _copy(view, start, end)
                )
                in_flight.add(request_id)
                append(Request(request_id, key, deadline_us, trace, metadata, payload))
                continue
            body = _copy(view, start, end)
            event = self._receive_other(request_id, frame_type, body)
            if event is not None:
                append(event)
                if type(event) is Handshake and self._state is OPEN:
                    max_frame = self.max_frame  # the client's: its peer is now known
                if type(event) is Goodbye:
                    # Anything after a goodbye is not ours to interpret.
                    pos = size
                    break
        if pos == size:
            if buffer:
                self._buffer = bytearray()
        elif view is buffer:
            del buffer[:pos]
        else:
            with memoryview(view) as whole:  # one copy of the partial frame, not two
                self._buffer = bytearray(whole[pos:])
        return events

    def _reject(self, frame_type: int) -> None:
        self._transition(RECEIVE, _FRAME_EVENT[frame_type])

    def _receive_other(self, request_id: int, frame_type: int, body: bytes) -> Event | None:
        if frame_type == ERROR:
            kind, message = _decode_error(self, body)
            if request_id == 0:
                self._transition(RECEIVE, Goodbye)
                return Goodbye(kind, message)
            self._transition(RECEIVE, Error)
            if request_id not in self._in_flight:
                raise self._remote_error(
                    f"error for request {request_id}, which is not in flight", "unknown-request"
                )
            self._in_flight.remove(request_id)
            return Error(request_id, kind, message)
        if frame_type == CANCEL:
            self._transition(RECEIVE, Cancel)
            if body:
                raise self._remote_error("cancel frame with a body", "bad-cancel")
            # A cancel for a request already answered crossed our answer on the wire.
            return Cancel(request_id) if request_id in self._in_flight else None
        if frame_type == HANDSHAKE:
            self._transition(RECEIVE, Handshake)
            if request_id != 0:
                raise self._remote_error("handshake with a nonzero request id", "bad-handshake")
            try:
                version, deployment_id, fingerprint = _wire.decode_handshake(body)
            except RemoteProtocolError:
                self._fail()
                raise
            peer = Handshake(version, deployment_id, fingerprint)
            self._check_peer(peer)
            self.peer = peer
            return peer
        raise self._remote_error(f"unknown frame type {frame_type}", "unknown-frame")

    def _check_peer(self, peer: Handshake) -> None:
        if (peer.version, peer.deployment_id, peer.fingerprint) == (
            self.version,
            self.deployment_id,
            self.fingerprint,
        ):
            return
        self._fail()
        me, them = ("server", "client") if self._role is SERVER else ("client", "server")
        if peer.version != self.version:
            raise HandshakeError(
                f"this {me} speaks call protocol version {self.version}; "
                f"the {them} speaks version {peer.version}"
            )
        raise HandshakeError(
            f"this {me} is deployment {self.deployment_id!r} (fingerprint "
            f"{_hex(self.fingerprint)}); the {them} is deployment {peer.deployment_id!r} "
            f"(fingerprint {_hex(peer.fingerprint)})"
        )

    # -------------------------------------------------------------- sending

    def send(self, event: Event) -> bytes:
        """The bytes that say ``event`` to the peer. Raises :class:`LocalProtocolError`
        when the protocol does not allow it now."""
        if type(event) is Request:
            return self.send_request(
                event.request_id,
                event.method_key,
                event.deadline_us,
                event.payload,
                trace=event.trace,
                metadata=event.metadata,
            )
        if type(event) is Response:
            return self.send_response(event.request_id, event.payload)
        if type(event) is Error:
            return self.send_error(event.request_id, event.kind, event.message)
        if type(event) is Cancel:
            return self.send_cancel(event.request_id)
        if type(event) is Handshake:
            self._transition(SEND, Handshake)
            body = _wire.encode_handshake(event.version, event.deployment_id, event.fingerprint)
            return _wire.frame_header(0, HANDSHAKE, len(body)) + body
        if type(event) is Goodbye:
            self._transition(SEND, Goodbye)
            body = _wire.encode_error(event.kind, event.message)
            return _wire.frame_header(0, ERROR, len(body)) + body
        raise LocalProtocolError(f"cannot send {event!r}", code="bad-event")

    def hello(self) -> bytes:
        """Our handshake frame (the client's first frame; the server's reply)."""
        return self.send(Handshake(self.version, self.deployment_id, self.fingerprint))

    def goodbye(self, kind: str, message: str) -> bytes:
        return self.send(Goodbye(kind, message))

    def send_request(
        self,
        request_id: int,
        method_key: bytes,
        deadline_us: int,
        payload: bytes,
        *,
        trace: TraceContext | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> bytes:
        if self._state is not OPEN or self._role is not CLIENT:
            self._transition(SEND, Request)
        in_flight = self._in_flight
        if request_id in in_flight or not 0 < request_id <= _MAX_U64:
            raise LocalProtocolError(
                f"request id {request_id} is invalid or already in flight", code="bad-request-id"
            )
        if len(method_key) != 16:
            raise LocalProtocolError("a method key is 16 bytes", code="bad-method-key")
        if not 0 <= deadline_us <= MAX_DEADLINE_US:
            raise LocalProtocolError(f"deadline {deadline_us} µs out of range", code="bad-deadline")
        frame = _wire.encode_request(
            request_id, method_key, deadline_us, payload, trace=trace, metadata=metadata
        )
        if len(frame) - HEADER_SIZE > MAX_BODY:
            raise LocalProtocolError("request too large for one frame", code="frame-too-large")
        in_flight.add(request_id)
        return frame

    def send_response(self, request_id: int, payload: bytes) -> bytes:
        if self._state is not OPEN or self._role is not SERVER:
            self._transition(SEND, Response)
        self._answer(request_id)
        return HEADER.pack(request_id, RESPONSE | (len(payload) << 8)) + payload

    def send_error(self, request_id: int, kind: str, message: str) -> bytes:
        if request_id == 0:
            return self.goodbye(kind, message)
        if self._state is not OPEN or self._role is not SERVER:
            self._transition(SEND, Error)
        self._answer(request_id)
        body = _wire.encode_error(kind, message)
        return HEADER.pack(request_id, ERROR | (len(body) << 8)) + body

    def send_cancel(self, request_id: int) -> bytes:
        if self._state is not OPEN or self._role is not CLIENT:
            self._transition(SEND, Cancel)
        if request_id not in self._in_flight:
            raise LocalProtocolError(
                f"cannot cancel request {request_id}: not in flight", code="bad-request-id"
            )
        return HEADER.pack(request_id, CANCEL)

    def _answer(self, request_id: int) -> None:
        try:
            self._in_flight.remove(request_id)
        except KeyError:
            raise LocalProtocolError(
                f"request {request_id} is not in flight (already answered?)",
                code="bad-request-id",
            ) from None


def _copy(view: ReadBytes, start: int, end: int) -> bytes:
    """``bytes(view[start:end])`` with one copy, not two, when ``view`` is not bytes."""
    if type(view) is bytes:
        return view[start:end]
    with memoryview(view) as whole:
        return bytes(whole[start:end])


def _decode_request(
    connection: Connection, body: bytes
) -> tuple[bytes, int, TraceContext | None, Mapping[str, str] | None, bytes]:
    try:
        return _wire.decode_request(body)
    except RemoteProtocolError:
        connection._fail()
        raise


def _decode_error(connection: Connection, body: bytes) -> tuple[str, str]:
    try:
        return _wire.decode_error(body)
    except RemoteProtocolError:
        connection._fail()
        raise
