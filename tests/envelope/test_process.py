"""Tests for pyweaver.envelope._process: child processes and their supervisor."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from pyweaver.envelope._process import (
    ChildProcess,
    CrashLoopError,
    ProcessError,
    ProcessExitedError,
    ProcessSpec,
    ReadinessTimeoutError,
    RestartPolicy,
    Supervisor,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

READY_THEN_SLEEP = "print('READY', flush=True)\n"
SLEEP = "import time\nfor _ in range(600): time.sleep(0.1)\n"  # bounded: 60 s at most


def python(code: str, **options: object) -> ProcessSpec:
    return ProcessSpec(argv=(sys.executable, "-I", "-c", code), **options)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Lines:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.seen.append((stream, line))


async def test_exit_status_and_output() -> None:
    lines = Lines()
    code = (
        "import sys\n"
        "print('one'); print('two', flush=True)\n"
        "sys.stderr.write('oops\\r\\n'); sys.stderr.write('no newline')\n"
        "sys.exit(3)\n"
    )
    async with ChildProcess(python(code), on_line=lines) as child:
        assert await child.wait() == 3
        assert child.returncode == 3
    assert [line for stream, line in lines.seen if stream == "stdout"] == ["one", "two"]
    assert [line for stream, line in lines.seen if stream == "stderr"] == ["oops", "no newline"]
    assert sorted(child.last_lines) == sorted(lines.seen)


async def test_ready_line_and_polite_stop() -> None:
    lines = Lines()
    code = (
        "import os, signal\n"
        "def bye(*_):\n"  # os.write: the signal may interrupt a print
        "    os.write(1, b'bye\\n'); os._exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('starting'); print('  READY  ', flush=True)\n" + SLEEP
    )
    async with ChildProcess(python(code, ready_line="READY"), on_line=lines) as child:
        assert ("stdout", "  READY  ") in lines.seen
        assert await child.stop() == 0, lines.seen
    assert lines.seen[-1] == ("stdout", "bye")
    assert gone(child.pid)


async def test_sigterm_then_sigkill() -> None:
    code = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('READY', flush=True)\n" + SLEEP
    )
    spec = python(code, ready_line="READY", stop_grace=0.3)
    async with ChildProcess(spec) as child:
        child.send_signal(signal.SIGTERM)  # ignored
    assert child.returncode == -signal.SIGKILL
    assert gone(child.pid)


async def test_default_sigterm_ends_a_plain_child() -> None:
    async with ChildProcess(python(READY_THEN_SLEEP + SLEEP, ready_line="READY")) as child:
        pass
    assert child.returncode == -signal.SIGTERM


async def test_exit_before_ready_carries_the_last_lines() -> None:
    code = "import sys\nprint('loading')\nraise SystemExit('config is broken')\n"
    with pytest.raises(ProcessExitedError) as info:
        async with ChildProcess(python(code, ready_line="READY", keep_lines=5)):
            pytest.fail("not ready")
    error = info.value
    assert error.returncode == 1
    assert ("stdout", "loading") in error.last_lines
    assert ("stderr", "config is broken") in error.last_lines
    assert "config is broken" in str(error) and "exit status 1" in str(error)


async def test_readiness_timeout_stops_the_child() -> None:
    pids: list[int] = []

    async def never(child: ChildProcess) -> None:
        pids.append(child.pid)
        await anyio.sleep_forever()

    with pytest.raises(ReadinessTimeoutError, match=r"not ready within 0\.3 s"):
        async with ChildProcess(python(SLEEP, ready_timeout=0.3), ready=never):
            pytest.fail("not ready")
    assert pids and gone(pids[0])


async def test_ready_check(tmp_path: Path) -> None:
    marker = tmp_path / "up"

    async def file_exists(child: ChildProcess) -> None:
        with anyio.fail_after(20):
            while not marker.exists():
                await anyio.sleep(0.01)

    code = f"open({str(marker)!r}, 'w').close()\n" + SLEEP
    async with ChildProcess(python(code), ready=file_exists) as child:
        assert marker.exists()
    assert gone(child.pid)


async def test_failing_ready_check_stops_the_child() -> None:
    pids: list[int] = []

    async def refuse(child: ChildProcess) -> None:
        pids.append(child.pid)
        raise ConnectionRefusedError("no control socket")

    with pytest.raises(ConnectionRefusedError):
        async with ChildProcess(python(SLEEP), ready=refuse):
            pytest.fail("not ready")
    assert gone(pids[0])


async def test_cancellation_still_stops_the_child() -> None:
    pids: list[int] = []
    with anyio.move_on_after(0.5) as scope:
        async with ChildProcess(python(READY_THEN_SLEEP + SLEEP, ready_line="READY")) as child:
            pids.append(child.pid)
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert gone(pids[0])


async def test_body_exception_propagates_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with ChildProcess(python(SLEEP)):
            raise KeyError("mine")


async def test_grandchild_holding_the_pipes_does_not_hang_stop() -> None:
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {SLEEP!r}])\n"
        "print(child.pid, flush=True)\n" + SLEEP
    )
    lines = Lines()
    async with ChildProcess(python(code, stop_grace=0.5), on_line=lines) as child:
        with anyio.fail_after(20):
            while not lines.seen:
                await anyio.sleep(0.01)
    grandchild = int(lines.seen[0][1])
    try:
        assert gone(child.pid)
    finally:
        os.kill(grandchild, signal.SIGKILL)


FAST = RestartPolicy(max_crashes=3, window=30, initial_backoff=0.01, max_backoff=0.05)


async def test_supervisor_gives_up_on_a_crash_loop_at_start() -> None:
    code = "import sys\nprint('Traceback: boom', file=sys.stderr)\nsys.exit(2)\n"
    with pytest.raises(CrashLoopError) as info:
        async with Supervisor(python(code, ready_line="READY"), policy=FAST):
            pytest.fail("never ready")
    assert info.value.returncode == 2
    assert info.value.last_lines == (("stderr", "Traceback: boom"),)
    assert "crashed 3 times" in str(info.value)


async def test_supervisor_restarts_a_killed_child() -> None:
    pids: list[int] = []

    async def started(child: ChildProcess) -> None:
        pids.append(child.pid)

    spec = python("print('READY', flush=True)\n" + SLEEP, ready_line="READY")
    async with Supervisor(spec, policy=FAST, on_start=started) as supervisor:
        assert supervisor.starts == 1 and supervisor.child is not None
        os.kill(pids[0], signal.SIGKILL)
        with anyio.fail_after(30):
            while supervisor.starts < 2:
                await anyio.sleep(0.01)
        assert supervisor.child is not None and supervisor.child.pid == pids[1]
    assert len(pids) == 2 and pids[0] != pids[1]
    assert all(gone(pid) for pid in pids)


async def test_supervisor_crash_loop_later_cancels_the_body() -> None:
    code = "print('READY', flush=True)\nimport sys, time\ntime.sleep(0.05)\nsys.exit(5)\n"
    reached_end = False
    with pytest.raises(CrashLoopError) as info:
        async with Supervisor(python(code, ready_line="READY"), policy=FAST):
            await anyio.sleep(60)
            reached_end = True
    assert not reached_end
    assert info.value.returncode == 5
    assert ("stdout", "READY") in info.value.last_lines


async def test_supervisor_clean_exit_ends_supervision() -> None:
    lines = Lines()
    async with Supervisor(python("print('done')"), policy=FAST, on_line=lines) as supervisor:
        assert await supervisor.wait() == 0
    assert lines.seen == [("stdout", "done")]
    assert supervisor.starts == 1


async def test_supervisor_restart_on_success() -> None:
    policy = RestartPolicy(max_crashes=2, window=30, initial_backoff=0.01, restart_on_success=True)
    with pytest.raises(CrashLoopError) as info:
        async with Supervisor(python("pass"), policy=policy) as supervisor:
            await supervisor.wait()
    assert info.value.returncode == 0


async def test_supervisor_cannot_start_a_missing_program(tmp_path: Path) -> None:
    spec = ProcessSpec(argv=(str(tmp_path / "no-such-program"),))  # type: ignore[arg-type]
    with pytest.raises(ProcessError, match="cannot start the process") as info:
        async with Supervisor(spec, policy=FAST):
            pytest.fail("never started")
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_supervisor_on_start_failure_is_reported() -> None:
    async def broken(child: ChildProcess) -> None:
        raise RuntimeError("cannot register the replica")

    spec = python(READY_THEN_SLEEP + SLEEP, ready_line="READY")
    with pytest.raises(RuntimeError, match="cannot register"):
        async with Supervisor(spec, policy=FAST, on_start=broken):
            pytest.fail("never started")
