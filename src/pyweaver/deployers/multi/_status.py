"""The status endpoint of a running deployment, as the CLI and the dashboard ask it.

The endpoint itself (its protocol, :func:`serve_status`) is in
:mod:`pyweaver.contract._status`, because a single-process app serves one too; a
``pyweaver multi deploy`` process serves it on a Unix socket in its private run
directory and records that address in the deployment registry (``status_address``).

:func:`fetch_all` asks every live deployment of a registry (the CLI and the
dashboard both show what it returns); :func:`status_json` is the one JSON shape of its
answers (``pyweaver multi status --json``, the dashboard's ``/api/status``).
"""

from __future__ import annotations

from typing import Any

from pyweaver import call
from pyweaver._errors import PyWeaverError
from pyweaver.contract._status import (
    METRICS,
    REPLICA_METRICS,
    STATUS,
    STATUS_FINGERPRINT,
    serve_status,
)
from pyweaver.deployers._registry import Deployment, Registry

__all__ = [
    "METRICS",
    "REPLICA_METRICS",
    "STATUS",
    "STATUS_FINGERPRINT",
    "fetch",
    "fetch_all",
    "serve_status",
    "status_json",
]


async def fetch(address: str, deployment_id: str, method: bytes, *, timeout: float = 5.0) -> Any:
    """Ask a deployment's status server; raises ``RemoteCallError`` if it is gone
    (never an exception group: the client's task group would wrap it in one)."""
    try:
        async with call.Client(
            [address],
            deployment_id=deployment_id,
            fingerprint=STATUS_FINGERPRINT,
            replica_wait=min(timeout, 2.0),
            connect_timeout=timeout,
        ) as client:
            return call.strict_cbor_loads(await client.call(method, b""))
    except BaseExceptionGroup as group:
        first: BaseException | None = group.split(PyWeaverError)[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if first is None:
            raise
        raise first from group


async def fetch_all(
    registry: Registry, method: bytes, deployer: str = "multi"
) -> list[tuple[Deployment, Any]]:
    """Ask every live deployment of ``registry`` made by ``deployer``; a deployment
    that does not answer is paired with the error instead of its answer."""
    results: list[tuple[Deployment, Any]] = []
    for deployment in registry.list(deployer):
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
