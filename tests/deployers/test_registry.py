"""Tests for pyweaver.deployers._registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import platformdirs
import pytest

from pyweaver.deployers._registry import (
    DATA_DIR_ENV,
    Deployment,
    DeploymentNotFoundError,
    Registry,
    data_dir,
    pid_alive,
)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def deployment(pid: int | None = None, **overrides: object) -> Deployment:
    fields: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "app": "hello",
        "deployer": "multi",
        "pid": os.getpid() if pid is None else pid,
        "started": time.time(),
        "status_address": "127.0.0.1:1234",
        "config_path": "/tmp/weaver.toml",
    }
    fields.update(overrides)
    return Deployment(**fields)  # type: ignore[arg-type]


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "override"))
    assert data_dir() == tmp_path / "override"
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == Path(platformdirs.user_data_dir("pyweaver", appauthor=False))
    if sys.platform.startswith("linux"):
        assert data_dir() == tmp_path / "xdg" / "pyweaver"
        monkeypatch.delenv("XDG_DATA_HOME")
        assert data_dir() == tmp_path / "home" / ".local" / "share" / "pyweaver"


def test_registry_defaults_to_the_env_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert Registry().root == tmp_path


def test_register_list_get_unregister(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.list() == []
    first = deployment(started=1.0)
    second = deployment(started=2.0, deployer="single")
    registry.register(second)
    registry.register(first)
    assert registry.list() == [first, second]
    assert registry.list("single") == [second]
    assert registry.get(first.id) == first
    assert registry.get(first.id[:8]) == first
    registry.unregister(first.id)
    assert registry.list() == [second]
    registry.unregister(first.id)  # twice is fine
    assert oct((tmp_path / "registry").stat().st_mode & 0o777) == "0o700"
    stored = json.loads((tmp_path / "registry" / f"{second.id}.json").read_text())
    assert stored["app"] == "hello"
    assert [p.name for p in (tmp_path / "registry").iterdir()] == [f"{second.id}.json"]


def test_get_errors(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.register(deployment(id="abc-1"))
    registry.register(deployment(id="abc-2"))
    with pytest.raises(DeploymentNotFoundError, match="ambiguous"):
        registry.get("abc")
    with pytest.raises(DeploymentNotFoundError, match="no live deployment"):
        registry.get("zzz")
    with pytest.raises(LookupError):
        registry.get("")
    assert registry.get("abc-1").id == "abc-1"


@pytest.mark.slow
def test_dead_deployments_are_dropped(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    pid = dead_pid()
    assert not pid_alive(pid)
    assert pid_alive(os.getpid())
    gone = deployment(pid=pid)
    registry.register(gone)
    assert registry.list() == []
    assert not (tmp_path / "registry" / f"{gone.id}.json").exists()


def test_ids_cannot_escape_the_directory(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="invalid deployment id"):
            registry.register(deployment(id=bad))


def test_unreadable_entries_are_skipped(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    live = deployment()
    registry.register(live)
    (tmp_path / "registry" / "broken.json").write_text("{not json")
    assert registry.list() == [live]


@pytest.mark.slow
def test_purge_removes_only_data_of_deployments_not_running(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    live = deployment()
    dead = deployment(pid=dead_pid())
    registry.register(live)
    registry.register(dead)
    for d in (live, dead):
        registry.logs_dir(d.id).mkdir(parents=True)
        (registry.logs_dir(d.id) / "log.jsonl").write_text("{}\n")
    orphan = registry.logs_dir("orphan")
    orphan.mkdir()
    (tmp_path / "registry" / ".x.json.123.tmp").write_text("torn")

    result = registry.purge()

    assert result.running == (live,)
    assert set(result.removed) == {dead.id, "orphan"}
    assert registry.logs_dir(live.id).is_dir()
    assert not registry.logs_dir(dead.id).exists()
    assert not orphan.exists()
    assert sorted(p.name for p in (tmp_path / "registry").iterdir()) == [f"{live.id}.json"]


def test_purge_on_an_empty_dir(tmp_path: Path) -> None:
    result = Registry(tmp_path / "nothing-here").purge()
    assert result.removed == () and result.running == ()


@pytest.mark.slow
def test_a_zombie_is_not_alive() -> None:
    # A deployer that exited but was never waited for (an orphan, where PID 1 does not
    # reap) is a zombie: it must not count as a running deployment.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat[stat.rfind(")") + 2] == "Z":
            break
        time.sleep(0.01)
    try:
        assert not pid_alive(child.pid)
    finally:
        child.wait()
