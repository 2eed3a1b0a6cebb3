"""Hypothesis profiles for the fuzz suite.

``make test`` runs it quickly (the tests' own ``max_examples``, a few hundred each);
``python -m pytest tests/fuzz --hypothesis-profile=fuzz`` runs ≥ 100,000 cases in all
(:data:`FUZZ_EXAMPLES` per test). Failing examples are saved in ``tests/fuzz/corpus``
(hypothesis's example database, committed) and replayed first on every run.
"""

from __future__ import annotations

import pathlib

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

CORPUS = pathlib.Path(__file__).parent / "corpus"
FUZZ_EXAMPLES = 20_000  # per test; six tests

settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=DirectoryBasedExampleDatabase(CORPUS),
)
