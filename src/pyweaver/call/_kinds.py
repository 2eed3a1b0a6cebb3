"""The kinds of system failure an ERROR frame carries, and how a client reads them.

Application exceptions never travel as ERROR frames: the runtime's codec encodes them in
the RESPONSE payload. An ERROR frame means the *system* failed the request:

================== ============ ======================================================
kind               retriable    meaning
================== ============ ======================================================
``unavailable``    yes          the replica cannot take the call now (still starting,
                                shutting down); the handler raised :class:`Unavailable`
``unknown-method`` no           no handler for the method key on that server
``internal``       no           the handler raised; the method may have partly run
``cancelled``      no           the client cancelled the request (it does not wait for
                                this answer; it is sent so every request gets one)
``deadline``       no           the caller's deadline passed while the handler ran
``not-authorized`` no           the caller's certificate does not allow that method
                                (mTLS; the message says nothing about the server)
================== ============ ======================================================

A goodbye (ERROR with request id 0) closes the connection; its kinds are ``protocol``
(the peer broke the protocol), ``handshake`` (the peers are incompatible) and
``shutdown`` (the server is stopping).
"""

from __future__ import annotations

from typing import Final

from pyweaver._errors import NotAuthorized, Unavailable

__all__ = [
    "CANCELLED",
    "DEADLINE",
    "HANDSHAKE_REFUSED",
    "INTERNAL",
    "NOT_AUTHORIZED",
    "PROTOCOL",
    "RETRIABLE_KINDS",
    "SHUTDOWN",
    "UNAVAILABLE",
    "UNKNOWN_METHOD",
    "NotAuthorized",
    "Unavailable",
]

UNAVAILABLE: Final = "unavailable"
UNKNOWN_METHOD: Final = "unknown-method"
INTERNAL: Final = "internal"
CANCELLED: Final = "cancelled"
DEADLINE: Final = "deadline"
NOT_AUTHORIZED: Final = "not-authorized"

PROTOCOL: Final = "protocol"
HANDSHAKE_REFUSED: Final = "handshake"
SHUTDOWN: Final = "shutdown"

# Kinds that prove the method did not run, so the call may be re-sent even when it is
# not retriable.
RETRIABLE_KINDS: Final = frozenset({UNAVAILABLE})
