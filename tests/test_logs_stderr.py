"""A process's multi-line stderr output becomes one log entry: the line joiner of the
envelope's stderr reader, the reader's bounded wait, and the entry the envelope makes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pyweaver.contract._config import AppConfig
from pyweaver.contract._logentry import LogEntry
from pyweaver.envelope import Envelope, ProcessChild
from pyweaver.envelope._process import ChildProcess, LineJoiner, ProcessSpec

TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "app.py", line 3, in <module>',
    "    main()",
    "    ^^^^^^",
    '  File "app.py", line 2, in main',
    "    raise ValueError('boom')",
    "ValueError: boom",
]
CHAINED = [
    "Traceback (most recent call last):",
    '  File "app.py", line 2, in <module>',
    "KeyError: 'k'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    *TRACEBACK,
]
GROUP = [
    "  + Exception Group Traceback (most recent call last):",
    '  |   File "app.py", line 1, in <module>',
    "  | ExceptionGroup: eg (1 sub-exception)",
    "  +-+---------------- 1 ----------------",
    "    | ValueError: x",
    "    +------------------------------------",
]


def join(lines: list[str]) -> list[list[str]]:
    joiner = LineJoiner()
    messages = [message for line in lines for message in joiner.feed(line)]
    rest = joiner.flush()
    return [*messages, rest] if rest else messages


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["one", "two"], [["one"], ["two"]]),
        (TRACEBACK, [TRACEBACK]),
        (["before", *TRACEBACK, "after"], [["before"], TRACEBACK, ["after"]]),
        (CHAINED, [CHAINED]),
        ([*TRACEBACK, "", "next"], [TRACEBACK, ["next"]]),
        ([*GROUP, "after"], [GROUP, ["after"]]),
        (
            ["app.py:3: UserWarning: careful", "  warnings.warn('careful')", "next"],
            [["app.py:3: UserWarning: careful", "  warnings.warn('careful')"], ["next"]],
        ),
        (
            ["Exception ignored in: <function f>", *TRACEBACK],
            [["Exception ignored in: <function f>", *TRACEBACK]],
        ),
        (["a", "\x1epyweaver-log:{}", "  b"], [["a"], ["\x1epyweaver-log:{}"], ["  b"]]),
        (["x", "", "y"], [["x"], ["y"]]),
    ],
)
def test_line_joiner(lines: list[str], expected: list[list[str]]) -> None:
    assert join(lines) == expected


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_uncaught_traceback_is_delivered_as_one_text() -> None:
    code = (
        "import sys, time\n"
        "print('first line', file=sys.stderr, flush=True)\n"
        "time.sleep(0.3)\n"  # longer than the join wait: delivered on its own
        "def main():\n"
        "    raise ValueError('boom')\n"
        "main()\n"
    )
    texts: list[tuple[str, str]] = []
    spec = ProcessSpec(argv=(sys.executable, "-I", "-c", code), join_stderr=True)  # type: ignore[arg-type]
    async with ChildProcess(
        spec, on_line=lambda stream, text: texts.append((stream, text))
    ) as child:
        await child.wait()
    stderr = [text for stream, text in texts if stream == "stderr"]
    assert stderr[0] == "first line"
    assert len(stderr) == 2, stderr
    assert stderr[1].startswith("Traceback (most recent call last):")
    assert stderr[1].endswith("ValueError: boom")
    assert "in main" in stderr[1]
    # The lines stay separate for error reports.
    assert ("stderr", "ValueError: boom") in child.last_lines


class Handler:
    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def handle_logs(self, envelope: Envelope, entries: Any) -> None:
        self.entries.extend(entries)


def test_the_envelope_makes_one_error_entry_of_a_traceback(tmp_path: Path) -> None:
    handler = Handler()
    envelope = Envelope(
        deployment_id="dep",
        replica_id="r1",
        group="main",
        components=[],
        run_main=True,
        config=AppConfig(),
        child=ProcessChild(["true"]),
        handler=handler,  # type: ignore[arg-type]
        socket_dir=tmp_path,
        name="w",
    )
    envelope._on_line("stderr", "\n".join(TRACEBACK))
    envelope._on_line("stderr", "a warning")
    envelope._on_line("stdout", "printed")
    traceback, warning, printed = handler.entries
    assert (traceback.level, traceback.message) == ("error", "ValueError: boom")
    assert traceback.attrs["traceback"] == "\n".join(TRACEBACK)
    assert (traceback.replica, traceback.group, traceback.deployment) == ("r1", "main", "dep")
    assert traceback.source == "stderr"
    assert (warning.level, warning.message, warning.attrs) == ("warning", "a warning", {})
    assert (printed.level, printed.source) == ("info", "stdout")
