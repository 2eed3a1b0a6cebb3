"""Tests for pyweaver.envelope._process: child processes (restarts: test_supervise)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from pyweaver.envelope._process import (
    ChildProcess,
    ProcessExitedError,
    ProcessSpec,
    ReadinessTimeoutError,
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
