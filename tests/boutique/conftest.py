"""Shared fixtures for the Online Boutique tests: the example's directory on sys.path (so
``import boutique`` finds its logic) and the app imported in a registration table of its
own (as tests/test_examples.py does)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pyweaver._runtime._appload import load_app
from pyweaver._runtime._component import isolated_registrations

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "onlineboutique"
APP = EXAMPLE / "app.py"
if str(EXAMPLE) not in sys.path:
    sys.path.append(str(EXAMPLE))  # after everything else: only `boutique` is wanted from it


@pytest.fixture
def boutique_app() -> Iterator[ModuleType]:
    """examples/onlineboutique/app.py, imported with fresh component registrations."""
    with isolated_registrations():
        sys.modules.pop("app", None)
        module = load_app(str(APP))
        try:
            yield module
        finally:
            sys.modules.pop("app", None)
