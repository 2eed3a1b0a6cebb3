"""The per-user registry of live deployments, and where deployers keep their data.

``pyweaver multi status|dashboard|logs|metrics|purge`` find deployments here. Layout
under the data dir (``$PYWEAVER_DATA_DIR``, else the platform's per-user data dir as
platformdirs finds it: ``$XDG_DATA_HOME/pyweaver`` or ``~/.local/share/pyweaver`` on
Linux, ``~/Library/Application Support/pyweaver`` on macOS; created with mode 0700)::

    <data dir>/
        registry/<deployment id>.json    one Deployment, JSON, written atomically
        logs/<deployment id>/...         that deployment's log files (see _logstore)

The entry's format and its writing live in :mod:`pyweaver.contract._status`, because
a single-process app registers itself. A registration names the deployer's process id;
an entry whose process is gone is a deployment that ended without unregistering
(killed, crashed, machine rebooted), so :meth:`Registry.list` drops it. Its logs stay
until :meth:`Registry.purge`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import attrs

from pyweaver._errors import DeploymentNotFoundError
from pyweaver.contract._status import (
    DATA_DIR_ENV,
    Deployment,
    data_dir,
    register_deployment,
    unregister_deployment,
    valid_id,
    write_atomically,
)

__all__ = [
    "DATA_DIR_ENV",
    "Deployment",
    "DeploymentNotFoundError",
    "PurgeResult",
    "Registry",
    "data_dir",
    "pid_alive",
    "write_atomically",
]

_SUFFIX = ".json"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs: it exists and is no zombie (a process that
    exited stays a zombie until its parent waits for it; an orphan's stays one for good
    where PID 1 does not reap, as in some containers)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it is just not ours
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc: trust the signal probe
    fields = stat[stat.rfind(")") + 2 :].split()
    return not fields or fields[0] != "Z"


@attrs.frozen(kw_only=True)
class PurgeResult:
    """What :meth:`Registry.purge` did: the ids whose data it removed, and the live
    deployments it left alone."""

    removed: tuple[str, ...]
    running: tuple[Deployment, ...]


class Registry:
    """The deployments registered under one data directory (default :func:`data_dir`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_dir()

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    @property
    def logs_root(self) -> Path:
        return self.root / "logs"

    def logs_dir(self, deployment_id: str) -> Path:
        """Where ``deployment_id``'s logs live (not created here)."""
        self._check_id(deployment_id)
        return self.logs_root / deployment_id

    def _check_id(self, deployment_id: str) -> None:
        if not valid_id(deployment_id):
            raise ValueError(f"invalid deployment id {deployment_id!r}")

    def register(self, deployment: Deployment) -> None:
        """Record ``deployment`` (replacing an entry with the same id)."""
        register_deployment(deployment, self.root)

    def unregister(self, deployment_id: str) -> None:
        """Forget ``deployment_id`` (its logs stay). Unknown ids are ignored."""
        unregister_deployment(deployment_id, self.root)

    def _read_all(self) -> list[Deployment]:
        deployments = []
        try:
            paths = sorted(self.registry_dir.glob(f"*{_SUFFIX}"))
        except FileNotFoundError:
            return []
        for path in paths:
            try:
                deployments.append(Deployment.from_json(json.loads(path.read_bytes())))
            except FileNotFoundError:
                continue  # unregistered while we looked
            except (ValueError, TypeError):
                # A file we cannot read is not a deployment we can show; leave it for
                # purge rather than guessing.
                continue
        return deployments

    def list(self, deployer: str | None = None) -> list[Deployment]:
        """Live deployments, oldest first; entries whose process is gone are removed."""
        live = []
        for deployment in self._read_all():
            if not pid_alive(deployment.pid):
                self.unregister(deployment.id)
            elif deployer is None or deployment.deployer == deployer:
                live.append(deployment)
        live.sort(key=lambda d: (d.started, d.id))
        return live

    def get(self, id_or_prefix: str, deployer: str | None = None) -> Deployment:
        """The live deployment whose id is, or starts with, ``id_or_prefix``."""
        deployments = self.list(deployer)
        exact = [d for d in deployments if d.id == id_or_prefix]
        if exact:
            return exact[0]
        matches = [d for d in deployments if id_or_prefix and d.id.startswith(id_or_prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DeploymentNotFoundError(f"no live deployment with id {id_or_prefix!r}")
        ids = ", ".join(d.id for d in matches)
        raise DeploymentNotFoundError(f"deployment id prefix {id_or_prefix!r} is ambiguous: {ids}")

    def purge(self) -> PurgeResult:
        """Remove the registry entries and logs of every deployment that is not running.

        Live deployments are left untouched and returned in ``running``: stop them
        first (Ctrl-C their ``deploy``) to purge their data.
        """
        running = self.list()
        keep = {d.id for d in running}
        removed: set[str] = set()
        if self.registry_dir.is_dir():
            for path in self.registry_dir.iterdir():
                deployment_id = path.name.removesuffix(_SUFFIX)
                if path.name.endswith(_SUFFIX) and deployment_id not in keep:
                    path.unlink(missing_ok=True)
                    removed.add(deployment_id)
                elif path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # left by a writer that died mid-write
        if self.logs_root.is_dir():
            for path in self.logs_root.iterdir():
                if path.name not in keep:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    removed.add(path.name)
        return PurgeResult(removed=tuple(sorted(removed)), running=tuple(running))
