"""A hung replica, a crash-looping group and killed weavelets, in a real ``pyweaver multi
deploy`` of ``apps/hung``: a SIGSTOPped replica is taken out of rotation (status says
``unresponsive``) while the other replica keeps answering, calls stuck on it end at
the default call deadline, and SIGCONT brings it back; a group that keeps crashing is
degraded while the rest of the deployment serves; killed weavelets leave no socket
files behind.

Run with ``-s`` to see the measured recovery times."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyweaver._errors import PyWeaverError
from pyweaver.deployers._registry import Registry
from pyweaver.deployers.multi._status import STATUS, fetch

pytestmark = pytest.mark.slow

HUNG = Path(__file__).parent / "apps" / "hung" / "weaver.toml"
WORKER = "app.Worker"
CRASHER = "app.Crasher"


def status(data_dir: Path) -> dict[str, Any] | None:
    deployments = Registry(data_dir).list("multi")
    if not deployments:
        return None
    (deployment,) = deployments
    try:
        report: dict[str, Any] = anyio.run(fetch, deployment.status_address, deployment.id, STATUS)
    except PyWeaverError:
        return None
    return report


def group(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [g for g in report["groups"] if g["name"] == name]
    return dict(found)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Output:
    """The lines main printed so far."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        # The deployer prints "I1130 06:43:22.282 stdout  0-8af2a7 ] ok 24717 0.017".
        return [
            line.split("] ", 1)[1]
            for line in self.path.read_text(errors="replace").splitlines()
            if " stdout " in line and "] " in line
        ]

    def ok_pids(self, start: int = 0) -> list[int]:
        return [int(line.split()[1]) for line in self.lines()[start:] if line.startswith("ok ")]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Output]]:
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(data_dir), "HUNG_CRASHER": "1"}
    out = tmp_path / "out.log"
    with out.open("w") as stdout, (tmp_path / "err.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pyweaver", "multi", "deploy", str(HUNG)],
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        try:
            yield process, data_dir, Output(out)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait(timeout=30)


def replica_of(report: dict[str, Any], pid: int) -> dict[str, Any] | None:
    for replica in group(report, WORKER)["replicas"]:
        if replica["pid"] == pid:
            return replica  # type: ignore[no-any-return]
    return None


def test_a_hung_replica_a_crash_loop_and_killed_weavelets(
    deployment: tuple[subprocess.Popen[str], Path, Output],
) -> None:
    process, data_dir, output = deployment

    def two_workers() -> list[int] | None:
        report = status(data_dir)
        if report is None or WORKER not in {g["name"] for g in report["groups"]}:
            return None
        pids = [r["pid"] for r in group(report, WORKER)["replicas"] if r["status"] == "healthy"]
        return pids if len(pids) == 2 else None

    hung, other = wait_for("two healthy workers", two_workers)
    wait_for("calls answered by both", lambda: {hung, other} <= set(output.ok_pids()))

    # -- SIGSTOP: out of rotation, the other replica answers, stuck calls end -----------
    os.kill(hung, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:

        def marked_unresponsive() -> bool:
            report = status(data_dir)
            replica = replica_of(report, hung) if report else None
            return replica is not None and replica["status"] == "unresponsive"

        wait_for("the stopped replica to be marked unresponsive", marked_unresponsive)
        out_of_rotation = time.monotonic() - stopped_at
        mark = len(output.lines())
        wait_for("20 calls answered while it is stopped", lambda: len(output.ok_pids(mark)) >= 20)
        assert set(output.ok_pids(mark)) == {other}
        # A call that was in flight on the stopped replica ends at the default deadline
        # (4 s in apps/hung/weaver.toml), long before SIGCONT.
        wait_for(
            "a call stuck on the stopped replica to end",
            lambda: any("default call deadline" in line for line in output.lines()),
            timeout=30,
        )
        assert process.poll() is None
    finally:
        os.kill(hung, signal.SIGCONT)
    continued_at = time.monotonic()

    def healthy_again() -> bool:
        report = status(data_dir)
        replica = replica_of(report, hung) if report else None
        return replica is not None and replica["status"] == "healthy"

    wait_for("the continued replica to be healthy", healthy_again)
    back_in_status = time.monotonic() - continued_at
    mark = len(output.lines())
    wait_for("calls answered by it again", lambda: hung in output.ok_pids(mark))
    back_in_rotation = time.monotonic() - continued_at

    # -- a crash-looping group is degraded; the others keep serving ---------------------
    def degraded() -> str:
        report = status(data_dir)
        return str(group(report, CRASHER)["degraded"]) if report else ""

    reason = wait_for("the crash-looping group to be degraded", degraded, timeout=120)
    assert "keeps crashing" in reason and "crasher: cannot start" in reason
    wait_for(
        "main to hear of it", lambda: any(line.startswith("crasher ") for line in output.lines())
    )
    mark = len(output.lines())
    wait_for("calls answered after the crash loop", lambda: len(output.ok_pids(mark)) >= 20)
    assert process.poll() is None

    # -- killed weavelets leave no socket files ------------------------------------------
    os.kill(other, signal.SIGKILL)
    wait_for("the killed worker to be replaced", lambda: (p := two_workers()) and other not in p)
    (entry,) = Registry(data_dir).list("multi")
    run_dir = Path(entry.status_address.removeprefix("unix://")).parent
    names = {path.name for path in run_dir.iterdir()}
    orphans = sorted(
        name for name in names if name.endswith((".c", ".d")) and f"{name[:-2]}.e" not in names
    )
    assert orphans == [], f"socket files of weavelets that are gone: {orphans}"

    print(
        f"\nSIGSTOP -> out of rotation (status unresponsive): {out_of_rotation:.2f} s"
        f"\nSIGCONT -> status healthy: {back_in_status:.2f} s"
        f"\nSIGCONT -> answering calls again: {back_in_rotation:.2f} s"
    )
