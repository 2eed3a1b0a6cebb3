"""``pyweaver.call``: the framed-CBOR call protocol every remote component call uses.

- :func:`serve` answers calls with handlers (``async (payload: bytes) -> bytes``) keyed by
  :func:`method_key`; :class:`Client` makes calls to a set of server endpoints with a
  balancer, reconnects, deadlines, cancellation and bounded retries.
- :class:`Connection` is the protocol itself as a pure state machine (bytes in, events
  out); the wire format is written out in ``pyweaver/call/_wire.py``.
- Endpoints: ``tcp://HOST:PORT``, ``tcp://[V6]:PORT``, ``unix:///PATH``, ``mem://NAME``.
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

from ._backend import use_uvloop as use_uvloop
from ._balancer import Balancer as Balancer
from ._balancer import HashBalancer as HashBalancer
from ._balancer import RoundRobin as RoundRobin
from ._client import Client as Client
from ._kinds import Unavailable as Unavailable
from ._protocol import Cancel as Cancel
from ._protocol import Connection as Connection
from ._protocol import ConnectionClosed as ConnectionClosed
from ._protocol import Error as Error
from ._protocol import Event as Event
from ._protocol import Goodbye as Goodbye
from ._protocol import Handshake as Handshake
from ._protocol import HandshakeError as HandshakeError
from ._protocol import Request as Request
from ._protocol import Response as Response
from ._protocol import Role as Role
from ._protocol import State as State
from ._retry import RetryPolicy as RetryPolicy
from ._server import Server as Server
from ._server import serve as serve
from ._session import Handler as Handler
from ._tracing import enable_tracing as enable_tracing
from ._tracing import tracing_enabled as tracing_enabled
from ._wire import DEFAULT_MAX_FRAME as DEFAULT_MAX_FRAME
from ._wire import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._wire import TraceContext as TraceContext
from ._wire import method_key as method_key

__all__ = [
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
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
    "tracing_enabled",
    "use_uvloop",
]
