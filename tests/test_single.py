"""The single-process runtime as users run it: `python app.py` and
`pyweaver single deploy`, shutdown hooks on exit and on SIGTERM, listeners, and the
hello example over real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"
EXAMPLES = Path(__file__).parent.parent / "examples"


def run_app(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_python_app_runs_main_and_shutdown_hooks() -> None:
    result = run_app(str(APPS / "good_app.py"), env={"PYWEAVER_CONFIG": str(APPS / "good.toml")})
    assert result.returncode == 0, result.stderr
    assert "lookup a=1" in result.stdout
    assert "local stub of good_app.Store" in result.stdout
    assert "store shutdown" in result.stdout


def test_single_deploy_runs_the_binary_with_its_config() -> None:
    result = run_app("-m", "pyweaver", "single", "deploy", str(APPS / "good.toml"))
    assert result.returncode == 0, result.stderr
    assert "lookup a=1" in result.stdout and "store shutdown" in result.stdout


def test_a_bad_config_is_a_clear_error_naming_the_file() -> None:
    result = run_app(
        str(APPS / "good_app.py"), env={"PYWEAVER_CONFIG": str(APPS / "bad_config.toml")}
    )
    assert result.returncode != 0
    assert "bad_config.toml" in result.stderr and "color" in result.stderr


def stop_waiting_app(argv: list[str], backend: str, sig: signal.Signals) -> tuple[str, str, int]:
    """Start good_app.py (via ``argv``), wait until it waits for a signal, send ``sig``;
    return its stdout, stderr and exit status."""
    env = {
        **os.environ,
        "PYWEAVER_CONFIG": str(APPS / "good.toml"),
        "GOOD_APP_WAIT": "1",
        "GOOD_APP_BACKEND": backend,
    }
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        lines = []
        for _ in range(20):
            line = proc.stdout.readline()
            lines.append(line)
            if "waiting for a signal" in line or not line:
                break
        assert "waiting for a signal" in lines[-1], lines
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, err, proc.returncode


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_run_shutdown_hooks(backend: str, sig: signal.Signals) -> None:
    out, err, status = stop_waiting_app([sys.executable, str(APPS / "good_app.py")], backend, sig)
    assert "store shutdown" in out, err
    if sig == signal.SIGTERM:  # stopped, not crashed: no traceback, the signal's status
        assert status == -signal.SIGTERM, err
        assert "Traceback" not in err, err


def test_sigterm_runs_shutdown_hooks_when_sigint_is_ignored() -> None:
    """A shell without job control starts `app &` with SIGINT ignored, so the event
    loop installs no SIGINT handler; SIGTERM must still stop the app through its
    shutdown hooks (asyncio; see pyweaver._runtime._signals for trio)."""
    launcher = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    argv = [sys.executable, "-c", launcher, str(APPS / "good_app.py")]
    out, err, status = stop_waiting_app(argv, "asyncio", signal.SIGTERM)
    assert "store shutdown" in out, err
    assert status == -signal.SIGTERM, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize(
    ("example", "path", "expected"),
    [
        ("hello", "/hello?name=World", "Hello, dlroW!\n"),
        ("collatz", "/?x=6", "6 3 10 5 16 8 4 2 1\n"),
        ("factors", "/?x=12", "1 2 3 4 6 12\n"),
    ],
)
def test_examples_serve_http_in_one_process(
    tmp_path: Path, example: str, path: str, expected: str
) -> None:
    script = EXAMPLES / example / "app.py"
    config = tmp_path / "weaver.toml"
    config.write_text(
        f'[serviceweaver]\nbinary = "{script}"\n'
        f'[single]\nlisteners.{example} = {{address = "127.0.0.1:0"}}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYWEAVER_CONFIG": str(config)},
    )
    try:
        assert proc.stderr is not None
        address = None
        for _ in range(50):
            line = proc.stderr.readline()
            match = re.search(r"address=(127\.0\.0\.1:\d+)", line)
            if match:
                address = match.group(1)
                break
            if not line:
                break
        assert address, f"{example} did not log its listener address"
        body = ""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body == expected
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_make_demo_runs_hello_in_one_process_and_in_many(tmp_path: Path) -> None:
    result = run_app(str(EXAMPLES / "hello" / "demo.py"), env={"PYWEAVER_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    answers = [line for line in result.stdout.splitlines() if line.startswith("GET ")]
    assert len(answers) == 2, result.stdout
    assert all(line.endswith("200: Hello, revaewyp!") for line in answers), answers
