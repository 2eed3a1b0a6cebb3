"""Tests for pyweaver.envelope.supervise: restarts, backoff and crash loops (the tests of
the former ``Supervisor``, moved to the one supervision helper)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from pyweaver.envelope import CrashLoopError, Outcome, RestartPolicy, supervise
from pyweaver.envelope._process import (
    ChildProcess,
    ProcessExitedError,
    ProcessSpec,
    ReadinessTimeoutError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SLEEP = "import time\nfor _ in range(600): time.sleep(0.1)\n"  # bounded: 60 s at most
FAST = RestartPolicy(max_crashes=3, window=30, initial_backoff=0.01, max_backoff=0.05)


def python(code: str, **options: object) -> ProcessSpec:
    return ProcessSpec(argv=(sys.executable, "-I", "-c", code), **options)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def run_child(spec: ProcessSpec, *, pids: list[int] | None = None) -> Outcome:
    """One run of a child process, as the multi deployer's slots do it."""
    try:
        async with ChildProcess(spec) as child:
            if pids is not None:
                pids.append(child.pid)
            status = await child.wait()
            return Outcome(status=status, argv=spec.argv, last_lines=child.last_lines)
    except (ProcessExitedError, ReadinessTimeoutError) as exc:
        return Outcome(status=exc.returncode, error=exc, argv=spec.argv)


async def test_gives_up_on_a_crash_loop_at_start() -> None:
    code = "import sys\nprint('Traceback: boom', file=sys.stderr)\nsys.exit(2)\n"
    spec = python(code, ready_line="READY")
    with pytest.raises(CrashLoopError) as info:
        await supervise(lambda: run_child(spec), FAST)
    assert info.value.returncode == 2
    assert info.value.last_lines == (("stderr", "Traceback: boom"),)
    assert "crashed 3 times" in str(info.value)
    assert isinstance(info.value.__cause__, ProcessExitedError)


async def test_restarts_a_killed_child() -> None:
    pids: list[int] = []
    spec = python("print('READY', flush=True)\n" + SLEEP, ready_line="READY")

    async def run_once() -> Outcome:
        async with ChildProcess(spec) as child:
            pids.append(child.pid)
            if len(pids) == 1:
                os.kill(child.pid, signal.SIGKILL)
                return Outcome(status=await child.wait())
            return Outcome(status=await child.stop())

    outcome = await supervise(
        run_once, FAST, restart=lambda outcome: outcome.status == -signal.SIGKILL
    )
    assert outcome.status == -signal.SIGTERM
    assert len(pids) == 2 and pids[0] != pids[1]
    assert all(gone(pid) for pid in pids)


async def test_crash_loop_after_being_ready_carries_the_output() -> None:
    code = "print('READY', flush=True)\nimport sys, time\ntime.sleep(0.05)\nsys.exit(5)\n"
    spec = python(code, ready_line="READY")
    with pytest.raises(CrashLoopError) as info:
        await supervise(lambda: run_child(spec), FAST)
    assert info.value.returncode == 5
    assert ("stdout", "READY") in info.value.last_lines


async def test_clean_exit_ends_supervision() -> None:
    runs: list[int] = []

    async def run_once() -> Outcome:
        runs.append(1)
        return await run_child(python("print('done')"))

    outcome = await supervise(run_once, FAST)
    assert outcome.status == 0
    assert outcome.last_lines == (("stdout", "done"),)
    assert len(runs) == 1


async def test_restart_on_success() -> None:
    policy = RestartPolicy(max_crashes=2, window=30, initial_backoff=0.01, restart_on_success=True)
    with pytest.raises(CrashLoopError) as info:
        await supervise(lambda: run_child(python("pass")), policy)
    assert info.value.returncode == 0


async def test_an_error_of_a_run_ends_supervision_as_itself(tmp_path: Path) -> None:
    spec = ProcessSpec(argv=(str(tmp_path / "no-such-program"),))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        await supervise(lambda: run_child(spec), FAST)

    async def broken() -> Outcome:
        raise RuntimeError("cannot register the replica")

    with pytest.raises(RuntimeError, match="cannot register"):
        await supervise(broken, FAST)


async def test_backoff_grows_to_its_cap() -> None:
    delays: list[float] = []

    async def crash() -> Outcome:
        return Outcome(status=1)

    policy = RestartPolicy(
        max_crashes=6, window=60, initial_backoff=0.001, multiplier=2, max_backoff=0.005
    )
    with pytest.raises(CrashLoopError, match="crashed 6 times"):
        await supervise(crash, policy, on_restart=lambda outcome, delay: delays.append(delay))
    assert delays == pytest.approx([0.001, 0.002, 0.004, 0.005, 0.005])


async def test_crashes_outside_the_window_are_no_crash_loop() -> None:
    # window=0: every run counts as having run "for a while" and every crash has left
    # the window by the next one, so supervision never gives up and never backs off.
    runs = 0
    delays: list[float] = []

    async def crash_four_times() -> Outcome:
        nonlocal runs
        runs += 1
        return Outcome(status=1 if runs < 5 else 0)

    policy = RestartPolicy(max_crashes=2, window=0, initial_backoff=0.001, max_backoff=1)
    outcome = await supervise(
        crash_four_times, policy, on_restart=lambda outcome, delay: delays.append(delay)
    )
    assert outcome.status == 0 and runs == 5
    assert delays == [0.001] * 4


async def test_a_stop_during_the_delay_is_not_restarted() -> None:
    stopped = False
    runs = 0

    async def run_once() -> Outcome:
        nonlocal runs
        runs += 1
        return Outcome(status=1)

    def stop_while_waiting(outcome: Outcome, delay: float) -> None:
        nonlocal stopped
        stopped = True

    outcome = await supervise(
        run_once, FAST, restart=lambda outcome: not stopped, on_restart=stop_while_waiting
    )
    assert runs == 1 and outcome.status == 1
