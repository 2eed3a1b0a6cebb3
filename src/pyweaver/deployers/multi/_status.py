"""The status endpoint of a running multi deployment, and the client the CLI uses.

A ``pyweaver multi deploy`` process serves two methods with the call protocol on a Unix
socket in its private run directory, and records that address in the deployment
registry (``status_address``): ``status`` (groups, replicas with pids and health,
listeners with proxy addresses) and ``metrics`` (every weavelet's metrics, merged).
Both answer CBOR. The handshake carries the deployment id and
:data:`STATUS_FINGERPRINT`, so a stale registry entry can never reach another
deployment's socket by mistake.

:func:`fetch_all` asks every live multi deployment of a registry (the CLI and the
dashboard both show what it returns); :func:`status_json` is the one JSON shape of its
answers (``pyweaver multi status --json``, the dashboard's ``/api/status``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import cbor2

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver.call import method_key
from pyweaver.deployers._registry import Deployment, Registry

__all__ = [
    "METRICS",
    "STATUS",
    "STATUS_FINGERPRINT",
    "fetch",
    "fetch_all",
    "serve_status",
    "status_json",
]

STATUS_FINGERPRINT: Final = hashlib.sha256(b"pyweaver-multi-status/1").digest()[:16]
_SERVICE: Final = "pyweaver.deployers.multi.Status"
STATUS: Final = method_key(_SERVICE, "status")
METRICS: Final = method_key(_SERVICE, "metrics")


@asynccontextmanager
async def serve_status(
    address: str,
    *,
    deployment_id: str,
    status: Callable[[], Awaitable[dict[str, Any]]],
    metrics: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> AsyncIterator[str]:
    """Serve ``status`` and ``metrics`` on ``address``; yields the address to record."""

    async def on_status(payload: bytes) -> bytes:
        data: bytes = cbor2.dumps(await status())
        return data

    async def on_metrics(payload: bytes) -> bytes:
        data: bytes = cbor2.dumps(await metrics())
        return data

    async with call.serve(
        address,
        {STATUS: on_status, METRICS: on_metrics},
        deployment_id=deployment_id,
        fingerprint=STATUS_FINGERPRINT,
    ) as server:
        yield server.address


async def fetch(address: str, deployment_id: str, method: bytes, *, timeout: float = 5.0) -> Any:
    """Ask a deployment's status server; raises ``RemoteCallError`` if it is gone."""
    async with call.Client(
        [address],
        deployment_id=deployment_id,
        fingerprint=STATUS_FINGERPRINT,
        replica_wait=min(timeout, 2.0),
        connect_timeout=timeout,
    ) as client:
        return call.strict_cbor_loads(await client.call(method, b""))


async def fetch_all(registry: Registry, method: bytes) -> list[tuple[Deployment, Any]]:
    """Ask every live multi deployment of ``registry``; a deployment that does not
    answer is paired with the error instead of its answer."""
    results: list[tuple[Deployment, Any]] = []
    for deployment in registry.list("multi"):
        try:
            answer = await fetch(deployment.status_address, deployment.id, method)
        except PyWeaverError as exc:
            answer = exc
        results.append((deployment, answer))
    return results


def status_json(results: list[tuple[Deployment, Any]]) -> list[dict[str, Any]]:
    """:func:`fetch_all`'s ``STATUS`` answers as JSON-ready data: per deployment its
    registry entry, its status report (``None`` if unreachable) and the error text."""
    return [
        {
            "deployment": deployment.to_json(),
            "status": None if isinstance(report, Exception) else report,
            "error": str(report) if isinstance(report, Exception) else "",
        }
        for deployment, report in results
    ]
