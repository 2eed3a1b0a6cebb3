"""The bad-config corpus: ``pyweaver check`` and ``pyweaver multi deploy`` find the same
error, with the same message naming file, section and key, and deploy stops before
starting anything.

Every directory under ``configs/bad/`` is one case: a ``weaver.toml`` (most run the
tiny app ``configs/corpus_app.py``; a case with an ``app.py`` of its own runs that),
and ``expected.txt``, lines that must all appear in the message. A ``deploy.skip``
file keeps a case out of the deploy half (its content says why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyweaver._check import check_app
from pyweaver._errors import PyWeaverError
from pyweaver.contract._appfacts import check_deployment
from pyweaver.contract._config import load_config
from pyweaver.deployers._registry import Registry

CONFIGS = Path(__file__).parent / "configs"
BAD = CONFIGS / "bad"
CASES = sorted(path.name for path in BAD.iterdir() if (path / "weaver.toml").is_file())
DEPLOYABLE = [case for case in CASES if not (BAD / case / "deploy.skip").exists()]
# Cases whose app hangs at import: checked with a short import timeout.
HANGS = {"app_hangs_at_import": 2.0}
# A few cases run through the real `pyweaver check` command too.
THROUGH_THE_CLI = [
    "toml_broken",
    "listener_nonsense",
    "colocate_unknown_component",
    "replicas_unknown_group",
    "section_wrong_type",
    "app_import_error",
    "app_hangs_at_import",
]
UNUSED_LISTENER = CONFIGS / "warn" / "unused_listener"


def expected(directory: Path) -> list[str]:
    return [line for line in (directory / "expected.txt").read_text().splitlines() if line]


def check_message(case: str) -> str:
    """What `pyweaver check` says about ``case``: its errors, or the error it stops on."""
    try:
        report = check_app(str(BAD / case / "weaver.toml"), timeout=HANGS.get(case, 60.0))
    except PyWeaverError as exc:
        return str(exc)
    assert not report.ok, f"check found nothing wrong with {case}"
    return "\n".join(report.errors)


def pyweaver(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process group, killed (by its pid) if it outlives ``timeout``."""
    env = {**os.environ, "PYWEAVER_DATA_DIR": str(cwd / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pyweaver", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_the_corpus_is_large_and_every_case_says_what_it_expects() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert expected(BAD / case), case


@pytest.mark.slow  # check imports the app in a child process
@pytest.mark.parametrize("case", CASES)
def test_check_finds_it(case: str) -> None:
    message = check_message(case)
    for line in expected(BAD / case):
        assert line in message


@pytest.mark.slow  # check imports the app in a child process
@pytest.mark.parametrize("case", THROUGH_THE_CLI)
def test_the_check_command_finds_it(case: str, tmp_path: Path) -> None:
    args = ["check", str(BAD / case / "weaver.toml")]
    if case in HANGS:
        args[1:1] = ["--timeout", str(HANGS[case])]
    result = pyweaver(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for line in expected(BAD / case):
        assert line in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", DEPLOYABLE)
def test_deploy_stops_on_it_first_with_checks_message(case: str, tmp_path: Path) -> None:
    result = pyweaver("multi", "deploy", str(BAD / case / "weaver.toml"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    # The error comes first, as one message (no traceback), and nothing was started:
    # no deployment banner, no output of the app, no deployment registered.
    assert result.stderr.startswith("Error: "), result.stderr
    assert not any(line.startswith("Traceback") for line in result.stderr.splitlines())
    assert "deployment :" not in result.stderr
    assert result.stdout == ""
    assert Registry(tmp_path / "data").list() == []
    for line in expected(BAD / case):
        assert line in result.stderr
    assert check_message(case) in result.stderr


@pytest.mark.slow  # check imports the app in a child process
def test_check_deployment_is_the_deployers_check() -> None:
    """The function every deployer calls finds what check finds (in-process, fast)."""
    for case in ["colocate_unknown_component", "replicas_unknown_group", "section_unknown_key"]:
        config = load_config(BAD / case / "weaver.toml")
        with pytest.raises(PyWeaverError) as caught:
            check_deployment(config)
        assert str(caught.value) == check_message(case)


@pytest.mark.slow  # check imports the app in a child process
def test_an_unused_listener_is_a_warning_of_check(tmp_path: Path) -> None:
    result = pyweaver("check", str(UNUSED_LISTENER / "weaver.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in expected(UNUSED_LISTENER):
        assert f"warning: {UNUSED_LISTENER / 'weaver.toml'}: {line}" in result.stderr
    assert "no errors" in result.stdout


@pytest.mark.slow
def test_an_unused_listener_is_a_warning_of_deploy_printed_first(tmp_path: Path) -> None:
    result = pyweaver("multi", "deploy", str(UNUSED_LISTENER / "weaver.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # main returns at once: a clean exit
    first = result.stderr.splitlines()[0]
    assert first.startswith("warning: ")
    for line in expected(UNUSED_LISTENER):
        assert line in first


@pytest.mark.slow  # check imports the app in a child process
def test_listeners_asked_for_by_literal_name_count_as_used() -> None:
    examples = Path(__file__).parent.parent / "examples"
    report = check_app(str(examples / "hello" / "weaver.toml"))
    assert report.ok, report.errors
    assert report.warnings == []
