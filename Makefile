# Two commands work on a fresh machine with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# System packages some tests need (a browser for the dashboard, iproute2), installed once
# by scripts/install-test-deps.sh when the repository has it; again if the script changes.
TEST_DEPS_SCRIPT := scripts/install-test-deps.sh
TEST_DEPS_STAMP := $(VENV)/.test-deps-installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/hello/demo.py

$(TEST_DEPS_STAMP): $(wildcard $(TEST_DEPS_SCRIPT)) | $(STAMP)
	@if [ -f $(TEST_DEPS_SCRIPT) ]; then bash $(TEST_DEPS_SCRIPT); fi
	@touch $@

# Lint, types (mypy's files come from pyproject.toml: src and tests), import contracts,
# then every test with the 25 slowest named.
test: $(STAMP) $(TEST_DEPS_STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --durations=25

# The tests that start no process (see tests/conftest.py): seconds, for the edit loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist
