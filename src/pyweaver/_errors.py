"""Every exception pyweaver raises, in one place.

The tree::

    PyWeaverError
    ├── RegistrationError        the app is malformed: a component, method, parameter, type,
    │                            router, Ref or listener is wrong (raised at start and by
    │                            ``pyweaver check``); the message names the thing at fault
    ├── ConfigError              weaver.toml is wrong; names the file, section and key
    ├── RemoteCallError          a system failure of a component call: the method may or
    │   │                        may not have run (0, 1 or many times)
    │   └── RetriableError       the call failed before the method ran; safe to retry
    ├── RemoteException          an application exception of a type that is not AutoMarshal,
    │                            re-raised on the caller's side with the original type name,
    │                            message and remote traceback text
    └── ProtocolError            the call protocol was violated (``pyweaver.call``)
        ├── LocalProtocolError   by us (a bug, or misuse of the state machine)
        └── RemoteProtocolError  by the peer: only that connection is closed

Lower-layer errors (OSError, anyio's BrokenResourceError, cbor2 decode errors) are
translated at one boundary each and always chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LocalProtocolError",
    "ProtocolError",
    "PyWeaverError",
    "RegistrationError",
    "RemoteCallError",
    "RemoteException",
    "RemoteProtocolError",
    "RetriableError",
]


class PyWeaverError(Exception):
    """Base class of every exception pyweaver raises itself."""


class RegistrationError(PyWeaverError):
    """The application is malformed. The message names the component, method,
    parameter, type, router, Ref or listener at fault."""


class ConfigError(PyWeaverError):
    """A weaver.toml (or config text) is malformed. The message names the file,
    section and key (or line) at fault."""


class RemoteCallError(PyWeaverError):
    """A system failure of a component call (not an exception raised by the method).

    The method may have run zero, one or many times.
    """


class RetriableError(RemoteCallError):
    """The call failed before the method ran (no replica reachable, connection refused,
    replica not ready). Retrying is safe; pyweaver already retried within the caller's
    deadline and retry budget unless the method is ``@not_retriable``."""


class RemoteException(PyWeaverError):
    """An application exception whose type is not AutoMarshal, raised by a remote method.

    Attributes:
        type_name: the original exception's ``module.QualName``.
        message: ``str()`` of the original exception.
        remote_traceback: the formatted traceback on the remote side.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"

    def __repr__(self) -> str:
        return f"RemoteException({self.type_name!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteException):
            return NotImplemented
        return (self.type_name, self.message) == (other.type_name, other.message)

    def __hash__(self) -> int:
        return hash((self.type_name, self.message))


class ProtocolError(PyWeaverError):
    """The call protocol was violated. Abstract: raise one of the two subclasses.

    Attributes:
        code: a short machine-readable reason, e.g. ``"frame-too-large"``.
    """

    def __init__(self, message: str, *, code: str = "protocol-error") -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; use Local/RemoteProtocolError")
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow. Only the offending
    connection is closed; the rest of the system keeps serving."""
