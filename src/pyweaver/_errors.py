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
    ├── ProtocolError            the call protocol was violated (``pyweaver.call``)
    │   ├── LocalProtocolError   by us (a bug, or misuse of the state machine)
    │   └── RemoteProtocolError  by the peer: only that connection is closed
    │       └── HandshakeError   the peer is of another version, deployment or app
    ├── CallFailure              why one attempt of a call failed, inside ``pyweaver.call``;
    │   │                        the client turns it into RemoteCallError / RetriableError
    │   ├── NotSent              the request was never written: the method did not run
    │   ├── ConnectionLost       the connection broke after the request was written
    │   └── ServerError          the server answered with an ERROR frame (``.kind``)
    ├── BootstrapError           the weavelet's bootstrap variable is missing or malformed
    ├── ProcessError             a weavelet's process failed (argv, returncode, last_lines)
    │   ├── ProcessExitedError   it exited before it was ready
    │   ├── ReadinessTimeoutError  it was not ready in time (it has been stopped)
    │   └── CrashLoopError       it crashed too often; supervision gave up
    ├── ProxyError               a listener proxy cannot do what was asked
    │   └── ListenerInUseError   its address is taken (also an OSError, EADDRINUSE)
    ├── DeploymentFailed         a deployment cannot go on (crash loop, proxy failure)
    ├── DeploymentNotFoundError  no live deployment (or more than one) matches an id
    │                            (also a LookupError)
    └── LogQueryError            a malformed log query (also a ValueError)

    Unavailable (Exception)      not an error pyweaver raises: a call handler raises it to
                                 tell the call server "this replica cannot take the call
                                 now"; the caller sees a RetriableError
    NotAuthorized (Exception)    the call server's signal that the calling peer may not
                                 call that method (mTLS authorization); the caller sees
                                 a RemoteCallError "not authorized"

``CallFailure`` and its subclasses never leave ``pyweaver.call``'s client; they sit
under PyWeaverError so that one escaping by mistake is still reported as pyweaver's.
``Unavailable`` is a signal from code that *uses* ``pyweaver.call``, not a failure of
pyweaver, so it stays outside the tree (an ``except PyWeaverError`` around a handler's
own calls must not swallow it).

Two private control-flow exceptions live beside the code that raises and catches them
and never reach a user: the codec's ``_Mismatch``/``_Unsupported`` and the config
parser's ``_WrongType``.

Lower-layer errors (OSError, anyio's BrokenResourceError, cbor2 decode errors) are
translated at one boundary each and always chained with ``raise ... from exc``.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

__all__ = [
    "BootstrapError",
    "CallFailure",
    "ConfigError",
    "ConnectionLost",
    "CrashLoopError",
    "DeploymentFailed",
    "DeploymentNotFoundError",
    "HandshakeError",
    "ListenerInUseError",
    "LocalProtocolError",
    "LogQueryError",
    "NotAuthorized",
    "NotSent",
    "ProcessError",
    "ProcessExitedError",
    "ProtocolError",
    "ProxyError",
    "PyWeaverError",
    "ReadinessTimeoutError",
    "RegistrationError",
    "RemoteCallError",
    "RemoteException",
    "RemoteProtocolError",
    "RetriableError",
    "ServerError",
    "Unavailable",
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


class HandshakeError(RemoteProtocolError):
    """The peer is of another protocol version, deployment or app fingerprint.

    The message says which side is which, e.g. ``this server is deployment "A"
    (fingerprint 0a1b...); the client is deployment "B" (fingerprint 9f8e...)``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="handshake-refused")


# -- inside pyweaver.call ------------------------------------------------------------


class CallFailure(PyWeaverError):
    """Why one attempt of a call failed (translated by the client into the public
    RemoteCallError / RetriableError)."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.message = message


class NotSent(CallFailure):
    """The request was never written: the method did not run."""


class ConnectionLost(CallFailure):
    """The connection broke after the request was written: the method may have run."""


class DefaultDeadlineExpired(CallFailure):
    """The call had no deadline of its own and got no answer within the client's
    ``call_timeout``: the method may have run."""


class ServerError(CallFailure):
    """The server answered with an ERROR frame."""

    def __init__(self, endpoint: str, kind: str, message: str) -> None:
        super().__init__(endpoint, f"{kind}: {message}")
        self.kind = kind
        self.detail = message


class Unavailable(Exception):
    """Raised by a handler to say "this replica cannot take the call now" (for example,
    its component is still initializing). The client gets an ``unavailable`` error and
    retries, possibly on another replica; the method did not run."""


class NotAuthorized(Exception):
    """Raised in a call server when the calling peer's identity may not call the
    requested method; the client gets a ``not-authorized`` error that says nothing
    about the server (not even whether it has that method)."""


# -- the weavelet/deployer contract ---------------------------------------------------


class BootstrapError(PyWeaverError):
    """The bootstrap environment variable is missing or malformed."""


# -- the deployer side of a weavelet ---------------------------------------------------


class ProcessError(PyWeaverError):
    """A child process failed.

    Attributes:
        argv: the command line.
        returncode: the exit status (negative: killed by that signal), None if running.
        last_lines: the last lines it wrote, as ``(stream, line)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        returncode: int | None,
        last_lines: Sequence[tuple[str, str]],
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.last_lines = tuple(last_lines)
        text = f"{message}: {' '.join(self.argv)}"
        if returncode is not None:
            text += f" (exit status {returncode})"
        if self.last_lines:
            output = "\n".join(f"  {stream}| {line}" for stream, line in self.last_lines)
            text += f"\nlast output:\n{output}"
        super().__init__(text)


class ProcessExitedError(ProcessError):
    """The child exited before it was ready."""


class ReadinessTimeoutError(ProcessError):
    """The child was not ready in time; it has been stopped."""


class CrashLoopError(ProcessError):
    """The child crashed ``max_crashes`` times within ``window`` seconds; supervision
    gave up."""


# -- deployers -------------------------------------------------------------------------


class ProxyError(PyWeaverError):
    """The listener proxy cannot do what was asked."""


class ListenerInUseError(ProxyError, OSError):
    """The proxy's listen address is already in use.

    Also an :class:`OSError` with ``errno == EADDRINUSE``, so code that handles bind
    failures generally handles this one too.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        OSError.__init__(self, errno.EADDRINUSE, f"listener address {address} is already in use")

    def __str__(self) -> str:
        return str(self.strerror)


class DeploymentFailed(PyWeaverError):
    """The deployment cannot go on: a weavelet crash-loops, or a listener's proxy
    address is taken. The message carries the weavelet's last output lines."""


class DeploymentNotFoundError(PyWeaverError, LookupError):
    """No live deployment matches the given id or prefix, or more than one does."""


class LogQueryError(PyWeaverError, ValueError):
    """A malformed log query.

    Attributes:
        query: the query text.
        position: the 0-based offset of the offending character.
    """

    def __init__(self, query: str, position: int, problem: str) -> None:
        self.query = query
        self.position = position
        self.problem = problem
        super().__init__(
            f"log query error at position {position}: {problem}\n  {query}\n  {' ' * position}^"
        )
