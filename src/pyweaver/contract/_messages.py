"""The control channel between an envelope and its weavelet: messages and method keys.

The control channel is two ordinary call-protocol servers on Unix sockets (Service
Weaver v0.23+ does the same): the envelope serves **DeployerControl** (weavelet →
envelope: register, activate a component, listener addresses, log batches, trace
spans) and the weavelet serves **WeaveletControl** (envelope → weavelet: components to
host, routing info, health, metrics, shutdown). Each method is addressed by
``method_key("pyweaver.envelope.<Service>", "<method>")``; its request and reply are
``@attrs.frozen`` messages encoded as CBOR through this module's own cattrs converter.

Both servers use :data:`CONTROL_FINGERPRINT` and the deployment id in the call
protocol's handshake, so a weavelet of one deployment can never talk to the envelope of
another (and an app's data-plane peers, which use the app's schema fingerprint, can
never reach a control server by mistake).

Every control method is idempotent (the call client may retry it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

import attrs
import cattrs
import cbor2
from cattrs.preconf.cbor2 import make_converter

from pyweaver._errors import RemoteProtocolError
from pyweaver.call import method_key, strict_cbor_decoder
from pyweaver.contract._logentry import LogEntry

__all__ = [
    "ACTIVATE_COMPONENT",
    "CONTROL_FINGERPRINT",
    "DEPLOYER_CONTROL",
    "EXPORT_LISTENER",
    "GET_HEALTH",
    "GET_LISTENER_ADDRESS",
    "GET_METRICS",
    "LOG_BATCH",
    "LOG_LINE_PREFIX",
    "REGISTER",
    "SHUTDOWN",
    "TRACE_SPANS",
    "UPDATE_COMPONENTS",
    "UPDATE_ROUTING",
    "WEAVELET_CONTROL",
    "ActivateComponent",
    "ControlMethod",
    "Empty",
    "ExportListener",
    "ExportListenerReply",
    "Health",
    "ListenerAddress",
    "ListenerAddressRequest",
    "LogBatch",
    "MetricsReply",
    "Register",
    "RegisterReply",
    "RoutingInfo",
    "TraceSpans",
    "UpdateComponents",
    "decode",
    "encode",
]

DEPLOYER_CONTROL: Final = "pyweaver.envelope.DeployerControl"
WEAVELET_CONTROL: Final = "pyweaver.envelope.WeaveletControl"

#: A weavelet's stderr line that starts with this carries one log entry as JSON
#: (``LogEntry.to_wire()``): how entries logged while the control channel is down reach
#: the envelope.
LOG_LINE_PREFIX: Final = "\x1epyweaver-log:"

#: The handshake fingerprint of both control servers (bump the suffix when a control
#: message changes incompatibly).
CONTROL_FINGERPRINT: Final = hashlib.sha256(b"pyweaver-control/1").digest()[:16]

_converter = make_converter()

Request = TypeVar("Request")
Reply = TypeVar("Reply")


def encode(message: object) -> bytes:
    """A control message as CBOR."""
    data: bytes = cbor2.dumps(_converter.unstructure(message))
    return data


# No CBOR tags but bignums (a span or metric sample may hold a huge int).
_loads: Final = strict_cbor_decoder(allow={2, 3})


def decode(kind: type[Reply], data: bytes) -> Reply:
    """The ``kind`` message in ``data``; anything malformed is a RemoteProtocolError."""
    try:
        return _converter.structure(_loads(data), kind)
    except (
        cbor2.CBORDecodeError,
        cattrs.BaseValidationError,
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
    ) as exc:
        raise RemoteProtocolError(
            f"malformed control message {kind.__name__}: {exc!r}", code="bad-control-message"
        ) from exc


# -- messages ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Empty:
    """No data."""


@attrs.frozen(kw_only=True)
class Register:
    """weavelet → envelope, first call: "I am up; here is how to reach me".

    Attributes:
        replica_id: the id the bootstrap gave this weavelet.
        pid: the weavelet's process id.
        control_address: where the weavelet serves WeaveletControl.
        data_address: where it serves its components' methods ("" if it serves none).
        fingerprint: the app's schema fingerprint (data-plane handshake).
        version: pyweaver's version in the weavelet.
    """

    replica_id: str
    pid: int
    control_address: str
    data_address: str
    fingerprint: bytes
    version: str


@attrs.frozen(kw_only=True)
class RegisterReply:
    """envelope → weavelet: "" accepted, else why not (the weavelet exits)."""

    error: str = ""


@attrs.frozen(kw_only=True)
class ActivateComponent:
    """weavelet → envelope: make sure ``component`` runs somewhere and subscribe me to
    its routing info."""

    component: str
    routed: bool = False


@attrs.frozen(kw_only=True)
class RoutingInfo:
    """Where the components of one colocation group run.

    Attributes:
        group: the group's name.
        components: the group's components.
        version: increases with every change of the group's replicas.
        replicas: replica slot id -> data-plane address, live replicas only.
        assignment: the slot assignment of routed calls (``Assignment.to_wire()``,
            over slot ids), None when no component of the group is routed.
        error: non-empty when the group cannot run (e.g. it crash-loops).
    """

    group: str
    components: list[str]
    version: int
    replicas: dict[str, str]
    assignment: dict[str, Any] | None = None
    error: str = ""


@attrs.frozen(kw_only=True)
class ListenerAddressRequest:
    """weavelet → envelope: where should listener ``name`` bind?"""

    name: str
    local_address: str = ""


@attrs.frozen(kw_only=True)
class ListenerAddress:
    address: str


@attrs.frozen(kw_only=True)
class ExportListener:
    """weavelet → envelope: listener ``name`` is bound at ``address``."""

    name: str
    address: str
    local_address: str = ""


@attrs.frozen(kw_only=True)
class ExportListenerReply:
    """The address clients should dial (the proxy's), or a non-retriable error."""

    proxy_address: str = ""
    error: str = ""


@attrs.frozen(kw_only=True)
class LogBatch:
    entries: list[LogEntry]


@attrs.frozen(kw_only=True)
class TraceSpans:
    spans: list[dict[str, Any]]


@attrs.frozen(kw_only=True)
class UpdateComponents:
    """envelope → weavelet: the full set of components to host (build) now."""

    components: list[str]


@attrs.frozen(kw_only=True)
class Health:
    """healthy: the weavelet serves; components: those built so far; failed: component
    -> why its construction failed."""

    healthy: bool
    components: list[str]
    failed: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class MetricsReply:
    """The weavelet's metric snapshot (``pyweaver._runtime._metrics.snapshot()``)."""

    samples: list[dict[str, Any]]


# -- methods ----------------------------------------------------------------------------


@attrs.frozen
class ControlMethod(Generic[Request, Reply]):
    """One control method: its service, name, message types and method key."""

    service: str
    name: str
    request: type[Request]
    reply: type[Reply]
    key: bytes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", method_key(self.service, self.name))

    def handler(
        self, function: Callable[[Request], Awaitable[Reply]]
    ) -> Callable[[bytes], Awaitable[bytes]]:
        """A call-protocol handler (bytes in, bytes out) around a typed ``function``."""
        request_type = self.request

        async def handle(payload: bytes) -> bytes:
            return encode(await function(decode(request_type, payload)))

        handle.__qualname__ = f"{self.service}.{self.name}"
        return handle


REGISTER = ControlMethod(DEPLOYER_CONTROL, "register", Register, RegisterReply)
ACTIVATE_COMPONENT = ControlMethod(
    DEPLOYER_CONTROL, "activate_component", ActivateComponent, RoutingInfo
)
GET_LISTENER_ADDRESS = ControlMethod(
    DEPLOYER_CONTROL, "get_listener_address", ListenerAddressRequest, ListenerAddress
)
EXPORT_LISTENER = ControlMethod(
    DEPLOYER_CONTROL, "export_listener", ExportListener, ExportListenerReply
)
LOG_BATCH = ControlMethod(DEPLOYER_CONTROL, "log_batch", LogBatch, Empty)
TRACE_SPANS = ControlMethod(DEPLOYER_CONTROL, "trace_spans", TraceSpans, Empty)

UPDATE_COMPONENTS = ControlMethod(WEAVELET_CONTROL, "update_components", UpdateComponents, Empty)
UPDATE_ROUTING = ControlMethod(WEAVELET_CONTROL, "update_routing", RoutingInfo, Empty)
GET_HEALTH = ControlMethod(WEAVELET_CONTROL, "get_health", Empty, Health)
GET_METRICS = ControlMethod(WEAVELET_CONTROL, "get_metrics", Empty, MetricsReply)
SHUTDOWN = ControlMethod(WEAVELET_CONTROL, "shutdown", Empty, Empty)
