"""A single-process app's status endpoint, so ``pyweaver single status|dashboard`` see it.

Like Service Weaver's single-process deployer, an app started with ``python app.py`` or
``pyweaver single deploy`` registers itself in the per-user deployment registry and
serves the status endpoint of :mod:`pyweaver.contract._status` (the same protocol a
``pyweaver multi deploy`` process serves) on a Unix socket in a private temporary
directory, for as long as its weavelet lives. The registry entry names this process, so
an app that is killed leaves an entry that the tools drop on sight.

The report shows one group (``main``, every registered component) with one replica, this
process: ``starting`` while a component's ``init`` runs, ``failed`` when one failed,
else ``healthy``. Registration is best effort: an app whose data dir is not writable
still runs (it says why at debug level).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pyweaver._runtime import _metrics
from pyweaver._runtime._weavelet import Weavelet
from pyweaver.contract import MAIN
from pyweaver.contract._metrics import add_labels
from pyweaver.contract._status import (
    Deployment,
    register_deployment,
    serve_status,
    unregister_deployment,
)

__all__ = ["single_status"]

_logger = logging.getLogger("pyweaver.runtime")


def _report(weavelet: Weavelet, started: float) -> dict[str, Any]:
    components = sorted(weavelet.registry.specs)
    built = [c for c in components if weavelet.built(c)]
    # The weavelet's bookkeeping of builds in progress and failures (same package).
    starting = sorted(c for c in weavelet._building if c != MAIN)
    failed = {c: f"{type(e).__name__}: {e}" for c, e in weavelet._failed.items()}
    status = "failed" if failed else "starting" if starting else "healthy"
    return {
        "deployment": weavelet.deployment_id,
        "app": weavelet.config.name,
        "started": started,
        "groups": [
            {
                "name": MAIN,
                "components": [MAIN, *components],
                "activated": [MAIN, *built, *starting],
                "routed": False,
                "replicas": [
                    {
                        "slot": f"{MAIN}#0",
                        "replica": weavelet.replica_id,
                        "pid": os.getpid(),
                        "state": "ready",
                        "status": status,
                        "starts": 1,
                        "restarts": 0,
                        "last_exit": None,
                        "health": {
                            "healthy": True,
                            "built": built,
                            "failed": failed,
                            "starting": starting,
                        },
                    }
                ],
            }
        ],
        "listeners": [
            {"name": listener.name, "proxy": str(listener), "backends": [listener.address]}
            for listener in weavelet._listeners
        ],
    }


@asynccontextmanager
async def single_status(weavelet: Weavelet) -> AsyncIterator[None]:
    """Serve ``weavelet``'s status endpoint and register it, until the block ends."""
    started = time.time()
    labels = {
        "serviceweaver_app": weavelet.config.name,
        "serviceweaver_version": weavelet.deployment_id,
    }

    async def status() -> dict[str, Any]:
        return _report(weavelet, started)

    async def metrics() -> list[dict[str, Any]]:
        return add_labels(_metrics.snapshot(), labels)

    async def replica_metrics() -> list[dict[str, Any]]:
        node = {"serviceweaver_group": MAIN, "serviceweaver_node": weavelet.replica_id}
        return add_labels(_metrics.snapshot(), {**labels, **node})

    directory = tempfile.mkdtemp(prefix="pyweaver-")
    try:
        async with serve_status(
            f"unix://{directory}/status.sock",
            deployment_id=weavelet.deployment_id,
            status=status,
            metrics=metrics,
            replica_metrics=replica_metrics,
        ) as address:
            registered = False
            try:
                register_deployment(
                    Deployment(
                        id=weavelet.deployment_id,
                        app=weavelet.config.name,
                        deployer="single",
                        pid=os.getpid(),
                        started=started,
                        status_address=address,
                        config_path=str(weavelet.config.path or ""),
                    )
                )
                registered = True
            except OSError as exc:
                _logger.debug("not registered for `pyweaver single status`: %s", exc)
            try:
                yield
            finally:
                if registered:
                    try:
                        unregister_deployment(weavelet.deployment_id)
                    except OSError:
                        pass
    finally:
        shutil.rmtree(directory, ignore_errors=True)
