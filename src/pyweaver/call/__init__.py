"""``pyweaver.call``: the framed-CBOR call protocol every remote component call uses.

::

    from pyweaver import call

    key = call.method_key("app.Reverser", "reverse")    # 16 bytes

    async def reverse(payload: bytes) -> bytes:         # a Handler: payload in, payload out
        return payload[::-1]

    handlers = {key: reverse}                            # looked up per request: may grow
    async with call.serve("tcp://127.0.0.1:0", handlers, deployment_id=d, fingerprint=f) as server:
        async with call.Client([server.address], deployment_id=d, fingerprint=f) as client:
            assert await client.call(key, b"abc") == b"cba"

- :func:`serve` answers calls; a handler raises :class:`Unavailable` for "not ready"
  (the client retries elsewhere) and anything else for an ``internal`` error. Payloads
  are opaque: application results and exceptions travel inside them.
- :class:`Client` calls a set of endpoints: one multiplexed connection each, a
  :class:`Balancer` (default :class:`RoundRobin`; ``shard_key`` goes to the balancer),
  reconnects with backoff, :meth:`Client.update_endpoints` with draining, the caller's
  deadline, ``weaver.metadata`` and (with :func:`enable_tracing`) the span context sent
  along, bounded retries (:class:`RetryPolicy`). Failures raise ``RetriableError`` (the
  method did not run) or ``RemoteCallError`` (it may have).
- :class:`Connection` is the protocol itself as a pure state machine (bytes in, events
  out); the wire format is written out in ``pyweaver/call/_wire.py``.
- :func:`strict_cbor_decoder`, :func:`strict_cbor_loads` and
  :func:`strict_payload_loads` decode CBOR from peers without acting on semantic tags
  (every wire decode in pyweaver goes through them; see ``pyweaver/call/_cbor.py``).
- Mutual TLS: ``serve(..., ssl_context=..., authorize=...)`` and
  ``Client(..., ssl_context=...)``; a peer's identity is the ``pyweaver://`` URI in its
  certificate, and ``authorize`` limits it to a set of method keys (``docs/security.md``).
- Endpoints: ``tcp://HOST:PORT``, ``tcp://[V6]:PORT``, ``unix:///PATH``, ``mem://NAME``.
- Both run on asyncio (``asyncio.Protocol`` driver; uvloop with
  ``anyio.run(main, backend_options=call.use_uvloop())``) and on trio (anyio streams).
"""

from pyweaver._errors import (
    LocalProtocolError as LocalProtocolError,
)
from pyweaver._errors import (
    RemoteCallError as RemoteCallError,
)
from pyweaver._errors import (
    RemoteProtocolError as RemoteProtocolError,
)
from pyweaver._errors import (
    RetriableError as RetriableError,
)
from pyweaver.call._backend import use_uvloop as use_uvloop
from pyweaver.call._balancer import Balancer as Balancer
from pyweaver.call._balancer import HashBalancer as HashBalancer
from pyweaver.call._balancer import RoundRobin as RoundRobin
from pyweaver.call._cbor import decoder as strict_cbor_decoder
from pyweaver.call._cbor import loads as strict_cbor_loads
from pyweaver.call._cbor import loads_payload as strict_payload_loads
from pyweaver.call._client import Client as Client
from pyweaver.call._kinds import Unavailable as Unavailable
from pyweaver.call._protocol import Cancel as Cancel
from pyweaver.call._protocol import Connection as Connection
from pyweaver.call._protocol import ConnectionClosed as ConnectionClosed
from pyweaver.call._protocol import Error as Error
from pyweaver.call._protocol import Event as Event
from pyweaver.call._protocol import Goodbye as Goodbye
from pyweaver.call._protocol import Handshake as Handshake
from pyweaver.call._protocol import HandshakeError as HandshakeError
from pyweaver.call._protocol import Request as Request
from pyweaver.call._protocol import Response as Response
from pyweaver.call._protocol import Role as Role
from pyweaver.call._protocol import State as State
from pyweaver.call._retry import RetryPolicy as RetryPolicy
from pyweaver.call._server import DEFAULT_HANDSHAKE_TIMEOUT as DEFAULT_HANDSHAKE_TIMEOUT
from pyweaver.call._server import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS
from pyweaver.call._server import Authorizer as Authorizer
from pyweaver.call._server import Server as Server
from pyweaver.call._server import serve as serve
from pyweaver.call._session import Handler as Handler
from pyweaver.call._tracing import enable_tracing as enable_tracing
from pyweaver.call._tracing import tracing_enabled as tracing_enabled
from pyweaver.call._wire import DEFAULT_MAX_FRAME as DEFAULT_MAX_FRAME
from pyweaver.call._wire import DEFAULT_MAX_HANDSHAKE_FRAME as DEFAULT_MAX_HANDSHAKE_FRAME
from pyweaver.call._wire import PROTOCOL_VERSION as PROTOCOL_VERSION
from pyweaver.call._wire import TraceContext as TraceContext
from pyweaver.call._wire import method_key as method_key

__all__ = [
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
