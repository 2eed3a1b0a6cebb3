"""``pyweaver multi profile``: sample every replica of a group (or of the whole
deployment) with py-spy at the same time, and merge what each one recorded into one
speedscope file.

py-spy (``pip install 'pyweaver[profile]'``) is a sampling profiler that reads a running
Python process's stacks from outside (ptrace), so the app needs no change and pays
nothing while it is not being profiled. Each replica gets its own ``py-spy record
--format speedscope --nonblocking`` run; the runs go concurrently. The merged file
(speedscope's JSON file format, https://www.speedscope.app/file-format-schema.json) has
one shared frame table and one profile per sampled thread, named
``GROUP REPLICA pid PID: THREAD`` so speedscope's profile menu lists every replica.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import attrs

from pyweaver._errors import PyWeaverError

__all__ = [
    "SPEEDSCOPE_SCHEMA",
    "Target",
    "find_py_spy",
    "merge_speedscope",
    "profile_targets",
    "targets_from_status",
]

SPEEDSCOPE_SCHEMA: Final = "https://www.speedscope.app/file-format-schema.json"

_PTRACE_HINT: Final = (
    "py-spy needs permission to read another process's memory (ptrace): run as root or "
    "as the user that owns the processes with kernel.yama.ptrace_scope=0 "
    "(sudo sysctl kernel.yama.ptrace_scope=0); in a container, add --cap-add SYS_PTRACE"
)


@attrs.frozen
class Target:
    """One replica to sample."""

    group: str
    replica: str
    pid: int

    @property
    def name(self) -> str:
        return f"{self.group} {self.replica[:8]} pid {self.pid}"


def targets_from_status(report: dict[str, Any], group: str | None) -> list[Target]:
    """The running replicas of ``group`` (a group's name, or the full or short name of
    a component in it; None: every group) in a deployment's status report."""
    groups = report.get("groups", [])
    if group is not None:
        short = "." + group

        def names(g: dict[str, Any]) -> list[str]:
            return [g["name"], *g.get("components", [])]

        chosen = [g for g in groups if any(n == group or n.endswith(short) for n in names(g))]
        if not chosen:
            known = ", ".join(g["name"] for g in groups) or "none"
            raise PyWeaverError(
                f"no group or component {group!r} in the deployment; groups: {known}"
            )
        groups = chosen
    return [
        Target(g["name"], replica["replica"], int(replica["pid"]))
        for g in groups
        for replica in g.get("replicas", [])
        if replica.get("pid")
    ]


def find_py_spy() -> str:
    """The py-spy executable: next to this Python's (a virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise PyWeaverError(
            "py-spy is not installed: pip install 'pyweaver[profile]' (or pip install py-spy)"
        )
    return found


async def _record(
    py_spy: str, target: Target, seconds: int, output: Path, *, rate: int, idle: bool
) -> dict[str, Any]:
    argv = [
        py_spy,
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "speedscope",
        "--output",
        str(output),
        "--nonblocking",
    ]
    if idle:
        argv.append("--idle")
    result = await anyio.run_process(
        argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    text = (result.stderr + result.stdout).decode(errors="replace").strip()
    if result.returncode != 0 or not await anyio.Path(output).exists():
        lowered = text.lower()
        if "permission" in lowered or "not permitted" in lowered:
            raise PyWeaverError(f"cannot sample {target.name}: {text}\n{_PTRACE_HINT}")
        raise PyWeaverError(f"py-spy failed on {target.name} (status {result.returncode}): {text}")
    try:
        data: dict[str, Any] = json.loads(await anyio.Path(output).read_text())
    except ValueError as exc:
        raise PyWeaverError(f"py-spy wrote an unreadable profile for {target.name}: {exc}") from exc
    return data


async def profile_targets(
    targets: Sequence[Target],
    seconds: float,
    *,
    rate: int = 100,
    idle: bool = False,
    py_spy: str | None = None,
) -> dict[str, Any]:
    """Sample ``targets`` concurrently for ``seconds`` (rounded up to whole seconds, as
    py-spy counts them) and return the merged speedscope document. Raises
    :class:`PyWeaverError` (naming the replica, and what to do when py-spy is missing
    or may not trace) if any replica could not be sampled."""
    if not targets:
        raise PyWeaverError("no running replicas to profile")
    executable = py_spy or find_py_spy()
    whole_seconds = max(1, math.ceil(seconds))
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pyweaver-profile-") as workdir:

        async def one(index: int, target: Target) -> None:
            output = Path(workdir) / f"{index}.json"
            try:
                results[index] = await _record(
                    executable, target, whole_seconds, output, rate=rate, idle=idle
                )
            except PyWeaverError as exc:
                errors.append(str(exc))

        async with anyio.create_task_group() as tasks:
            for index, target in enumerate(targets):
                tasks.start_soon(one, index, target)
    if errors:
        raise PyWeaverError("\n".join(errors))
    return merge_speedscope([(t.name, results[i]) for i, t in enumerate(targets)])


def merge_speedscope(documents: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One speedscope document holding every profile of ``documents`` (pairs of a
    name and a speedscope document): frames are deduplicated into one shared table and
    each profile's samples renumbered into it; a profile is named ``NAME: ITS NAME``."""
    frames: list[dict[str, Any]] = []
    frame_index: dict[tuple[Any, ...], int] = {}
    profiles: list[dict[str, Any]] = []
    for name, document in documents:
        own_frames = document.get("shared", {}).get("frames", [])
        remap = []
        for frame in own_frames:
            key = (frame.get("name"), frame.get("file"), frame.get("line"), frame.get("col"))
            if key not in frame_index:
                frame_index[key] = len(frames)
                frames.append(dict(frame))
            remap.append(frame_index[key])
        for profile in document.get("profiles", []):
            merged = dict(profile)
            merged["name"] = f"{name}: {profile.get('name', '')}".rstrip(": ")
            if profile.get("type") == "sampled":
                merged["samples"] = [[remap[i] for i in stack] for stack in profile["samples"]]
            elif profile.get("type") == "evented":
                merged["events"] = [
                    {**event, "frame": remap[event["frame"]]} for event in profile["events"]
                ]
            profiles.append(merged)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": "pyweaver profile: " + ", ".join(name for name, _ in documents),
        "activeProfileIndex": 0 if profiles else None,
        "exporter": "pyweaver",
    }
