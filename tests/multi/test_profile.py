"""``pyweaver multi profile``: merging speedscope files (fast), choosing replicas from a
status report (fast), and profiling a deployment under load with py-spy (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._profile import (
    SPEEDSCOPE_SCHEMA,
    Target,
    find_py_spy,
    merge_speedscope,
    targets_from_status,
)
from pyweaver.deployers.multi._status import STATUS, fetch

BUSY = Path(__file__).parent / "apps" / "busy" / "weaver.toml"


def py_spy_document(frames: list[str], samples: list[list[int]], thread: str) -> dict[str, Any]:
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {
            "frames": [{"name": n, "file": "app.py", "line": 1, "col": None} for n in frames]
        },
        "profiles": [
            {
                "type": "sampled",
                "name": thread,
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": 1.0,
                "samples": samples,
                "weights": [0.01] * len(samples),
            }
        ],
        "name": "py-spy profile",
        "activeProfileIndex": None,
        "exporter": "py-spy@0.4.3",
    }


def stacks(document: dict[str, Any], profile: dict[str, Any]) -> list[list[str]]:
    frames = document["shared"]["frames"]
    return [[frames[i]["name"] for i in stack] for stack in profile["samples"]]


def test_merge_shares_frames_and_keeps_every_profile() -> None:
    first = py_spy_document(["main", "spin", "burn"], [[0, 1, 2], [0, 1]], 'Thread 1 "Main"')
    second = py_spy_document(["burn", "idle", "main"], [[2, 0], [1]], 'Thread 9 "Main"')
    merged = merge_speedscope([("g r1 pid 1", first), ("g r2 pid 2", second)])
    assert merged["$schema"] == SPEEDSCOPE_SCHEMA
    names = [frame["name"] for frame in merged["shared"]["frames"]]
    assert sorted(names) == ["burn", "idle", "main", "spin"]  # each frame once
    one, two = merged["profiles"]
    assert one["name"] == 'g r1 pid 1: Thread 1 "Main"'
    assert two["name"] == 'g r2 pid 2: Thread 9 "Main"'
    assert stacks(merged, one) == [["main", "spin", "burn"], ["main", "spin"]]
    assert stacks(merged, two) == [["main", "burn"], ["idle"]]
    assert two["weights"] == [0.01, 0.01]
    assert merged["activeProfileIndex"] == 0
    json.dumps(merged)  # plain JSON


def test_merge_of_nothing_is_an_empty_document() -> None:
    assert merge_speedscope([])["profiles"] == []


REPORT = {
    "groups": [
        {
            "name": "app.Front",
            "components": ["app.Front", "app.Cart"],
            "replicas": [
                {"replica": "aaaaaaaa-1", "pid": 11},
                {"replica": "bbbbbbbb-2", "pid": 0},  # not running
            ],
        },
        {"name": "main", "components": ["main"], "replicas": [{"replica": "cccc", "pid": 33}]},
    ]
}


def test_targets_from_status() -> None:
    assert targets_from_status(REPORT, None) == [
        Target("app.Front", "aaaaaaaa-1", 11),
        Target("main", "cccc", 33),
    ]
    assert targets_from_status(REPORT, "Cart") == [Target("app.Front", "aaaaaaaa-1", 11)]
    assert targets_from_status(REPORT, "app.Front") == [Target("app.Front", "aaaaaaaa-1", 11)]
    with pytest.raises(
        match=r"no group or component 'Nope' in the deployment; groups: app\.Front, main",
    ):
        targets_from_status(REPORT, "Nope")


def test_missing_py_spy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PyWeaverError, match=r"pip install 'pyweaver\[profile\]'"):
        find_py_spy()


def running_hashers(registry: Registry) -> list[Target]:
    deployments = registry.list("multi")
    if not deployments:
        return []
    (deployment,) = deployments
    try:
        report = anyio.run(fetch, deployment.status_address, deployment.id, STATUS)
        return targets_from_status(report, "Hasher")
    except PyWeaverError:
        return []


@pytest.mark.slow
def test_profile_a_deployment_under_load(tmp_path: Path) -> None:
    try:
        find_py_spy()
    except PyWeaverError as exc:
        pytest.skip(str(exc))
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(tmp_path / "data"), "BUSY_SECONDS": "90"}
    deploy = subprocess.Popen(
        [sys.executable, "-m", "pyweaver", "multi", "deploy", str(BUSY)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        registry = Registry(tmp_path / "data")
        deadline = time.monotonic() + 60
        while len(running_hashers(registry)) < 2:
            assert time.monotonic() < deadline, "the Hasher replicas never started"
            assert deploy.poll() is None, "deploy exited early"
            time.sleep(0.2)
        output = tmp_path / "busy.speedscope.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pyweaver",
                "multi",
                "profile",
                "--duration",
                "2s",
                "-o",
                str(output),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0 and "ptrace" in result.stderr:
            pytest.skip(f"py-spy may not trace here: {result.stderr}")
        assert result.returncode == 0, result.stderr
        merged = json.loads(output.read_text())
    finally:
        deploy.send_signal(signal.SIGINT)
        try:
            deploy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            deploy.kill()
            deploy.wait()
    assert merged["$schema"] == SPEEDSCOPE_SCHEMA
    frames = merged["shared"]["frames"]
    # Main and the two Hasher replicas: at least one profile each, all with samples.
    replicas = {profile["name"].split(":")[0] for profile in merged["profiles"]}
    groups = sorted(name.split()[0] for name in replicas)
    assert groups.count("app.Hasher") == 2 and "main" in groups, replicas
    for replica in replicas:
        samples = [
            stack
            for profile in merged["profiles"]
            if profile["name"].startswith(replica + ":")
            for stack in profile["samples"]
        ]
        assert samples, f"no samples for {replica}"
        assert all(0 <= i < len(frames) for stack in samples for i in stack)
    hasher_frames = {
        frames[i]["name"]
        for profile in merged["profiles"]
        if profile["name"].startswith("app.Hasher")
        for stack in profile["samples"]
        for i in stack
    }
    assert "burn" in hasher_frames
