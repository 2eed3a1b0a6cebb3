"""The status endpoint every running deployment serves, and how it is registered.

The tools (``pyweaver single|multi status``, ``dashboard``, ``metrics``) find a running
deployment in the per-user registry and ask its status endpoint. Two kinds of process
serve one: a ``pyweaver multi deploy`` process (for its whole deployment), and a
single-process app (``python app.py`` or ``pyweaver single deploy``), for itself. Both
sides import this module; it holds what they must agree on:

* the endpoint protocol: the call protocol (:mod:`pyweaver.call`) on a Unix socket,
  the handshake carrying the deployment id and :data:`STATUS_FINGERPRINT` (so a stale
  registry entry never reaches another deployment's socket), and three methods whose
  request is empty and whose reply is CBOR: :data:`STATUS` (a report: ``deployment,
  app, started, groups [{name, components, activated, replicas [{slot, replica, pid,
  state, status, starts, restarts, last_exit, health}]}], listeners [{name, proxy,
  backends}]``), :data:`METRICS` (the merged metric snapshot, see
  :mod:`._metrics`) and :data:`REPLICA_METRICS` (the same, each replica's samples kept
  apart by the labels ``serviceweaver_group`` and ``serviceweaver_node``);
* the registry entry (:class:`Deployment`), one JSON file per live deployment under
  ``<data dir>/registry/``, written atomically (:func:`register_deployment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import cbor2
import platformdirs

from pyweaver import call
from pyweaver.call import method_key

__all__ = [
    "DATA_DIR_ENV",
    "METRICS",
    "REPLICA_METRICS",
    "STATUS",
    "STATUS_FINGERPRINT",
    "Deployment",
    "data_dir",
    "register_deployment",
    "serve_status",
    "unregister_deployment",
    "write_atomically",
]

STATUS_FINGERPRINT: Final = hashlib.sha256(b"pyweaver-multi-status/1").digest()[:16]
_SERVICE: Final = "pyweaver.deployers.multi.Status"
STATUS: Final = method_key(_SERVICE, "status")
METRICS: Final = method_key(_SERVICE, "metrics")
REPLICA_METRICS: Final = method_key(_SERVICE, "replica_metrics")

DATA_DIR_ENV: Final = "PYWEAVER_DATA_DIR"
_SUFFIX: Final = ".json"

StatusFn = Callable[[], Awaitable[dict[str, Any]]]
MetricsFn = Callable[[], Awaitable[list[dict[str, Any]]]]


@asynccontextmanager
async def serve_status(
    address: str,
    *,
    deployment_id: str,
    status: StatusFn,
    metrics: MetricsFn,
    replica_metrics: MetricsFn | None = None,
) -> AsyncIterator[str]:
    """Serve the status endpoint on ``address``; yields the address to register.
    Without ``replica_metrics``, :data:`REPLICA_METRICS` answers ``metrics()``."""

    def handler(produce: Callable[[], Awaitable[Any]]) -> Callable[[bytes], Awaitable[bytes]]:
        async def handle(payload: bytes) -> bytes:
            data: bytes = cbor2.dumps(await produce())
            return data

        return handle

    async with call.serve(
        address,
        {
            STATUS: handler(status),
            METRICS: handler(metrics),
            REPLICA_METRICS: handler(replica_metrics or metrics),
        },
        deployment_id=deployment_id,
        fingerprint=STATUS_FINGERPRINT,
    ) as server:
        yield server.address


# -- the registry entry ----------------------------------------------------------------------


def data_dir() -> Path:
    """The per-user pyweaver data directory (not created here): ``$PYWEAVER_DATA_DIR``
    (tests and side-by-side installs use it), else the platform's user data dir."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir("pyweaver", appauthor=False))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never
    a torn one: write a temporary file in the same directory, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@attrs.frozen(kw_only=True)
class Deployment:
    """One registered deployment.

    Attributes:
        id: the deployment id (a UUID string).
        app: the application name.
        deployer: ``"single"``, ``"multi"``, ...
        pid: the deployer's process id; the deployment is live while it runs.
        started: when it started, seconds since the epoch.
        status_address: the address of its status endpoint, ``""`` if none.
        config_path: the weaver.toml it was deployed from, ``""`` if none.
    """

    id: str
    app: str
    deployer: str
    pid: int
    started: float
    status_address: str = ""
    config_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        names = {field.name for field in attrs.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def valid_id(deployment_id: str) -> bool:
    """Whether ``deployment_id`` can name a file (ids become file names)."""
    return (
        bool(deployment_id)
        and all(c.isalnum() or c in "-_." for c in deployment_id)
        and (not deployment_id.startswith("."))
    )


def registration_path(root: Path, deployment_id: str) -> Path:
    if not valid_id(deployment_id):
        raise ValueError(f"invalid deployment id {deployment_id!r}")
    return root / "registry" / f"{deployment_id}{_SUFFIX}"


def register_deployment(deployment: Deployment, root: Path | None = None) -> None:
    """Record ``deployment`` under ``root`` (default :func:`data_dir`), replacing an
    entry with the same id; creates the directories (mode 0700)."""
    root = root if root is not None else data_dir()
    path = registration_path(root, deployment.id)
    for directory in (root, path.parent, root / "logs"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(deployment.to_json(), indent=2, sort_keys=True).encode()
    write_atomically(path, data)


def unregister_deployment(deployment_id: str, root: Path | None = None) -> None:
    """Forget ``deployment_id`` (its logs stay). Unknown ids are ignored."""
    path = registration_path(root if root is not None else data_dir(), deployment_id)
    path.unlink(missing_ok=True)
