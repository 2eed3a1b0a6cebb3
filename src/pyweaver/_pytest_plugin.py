"""pytest plugin (entry point ``pyweaver``): registers the markers weavertest uses."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "weavertest_modes(*modes): limit a weavertest test to these modes"
    )
