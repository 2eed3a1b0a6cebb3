"""The ``slow`` marker stays true: run tests/conftest.py in a scratch pytest session and
check that a test starting a process without the marker fails, and that marked tests, tests
starting nothing and weavertest's multi mode are handled as documented there."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

SCRATCH_TESTS = """
import subprocess, sys
import pytest

def start_one():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_unmarked_starts_a_process():
    start_one()

@pytest.mark.slow
def test_marked_starts_a_process():
    start_one()

def test_starts_nothing():
    pass

@pytest.fixture
def started():
    start_one()

def test_unmarked_fixture_starts_a_process(started):
    pass

@pytest.mark.parametrize("mode", ["local", "multi"])
def test_modes(mode):
    pass
"""


@pytest.mark.slow
def test_an_unmarked_test_that_starts_a_process_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    slow: starts processes\n")
    pytester.makepyfile(test_scratch=SCRATCH_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfE")
    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [  # pytest prints the setup errors before the failures
            "*test_unmarked_fixture_starts_a_process starts processes*not marked slow*",
            "*test_unmarked_starts_a_process starts processes (subprocess.Popen(*python*)) "
            "but is not marked slow*",
        ]
    )
    deselected = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not slow")
    # Left: the two unmarked process tests, test_starts_nothing and test_modes[local].
    deselected.assert_outcomes(passed=2, failed=1, errors=1)
    deselected.stdout.fnmatch_lines(["*2 deselected*"])
