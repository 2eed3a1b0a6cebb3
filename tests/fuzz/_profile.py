"""The settings every fuzz test runs under: quick by default, long under the profile."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from .conftest import CORPUS

QUICK_EXAMPLES = 350  # per test in ``make test``: ~2,000 cases in all


def fuzz_settings() -> settings:
    """The ``fuzz`` profile's settings when it is loaded, else a quick run (both replay
    the saved corpus first)."""
    if settings.get_current_profile_name() == "fuzz":
        return settings()
    return settings(
        max_examples=QUICK_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=DirectoryBasedExampleDatabase(CORPUS),
    )
