# Two commands work on a fresh machine with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# System packages some tests need (chromium and its driver for the browser tests,
# iproute2 for the network-namespace cluster), installed once by the
# scripts/install-*-deps.sh scripts; again when one of them changes.
TEST_DEPS_SCRIPTS := $(wildcard scripts/install-*-deps.sh)
TEST_DEPS_STAMP := $(VENV)/.test-deps-installed

.PHONY: demo test test-fast test-cluster bench clean

$(STAMP): pyproject.toml hatch_build.py src/pyweaver/_runtime/_localcall.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Online Boutique under `pyweaver multi deploy`: one shopper's walk, then it serves
# until Ctrl-C (DEMO_ONCE=1 stops after the walk).
demo: $(STAMP)
	$(PY) examples/onlineboutique/demo.py

$(TEST_DEPS_STAMP): $(TEST_DEPS_SCRIPTS) | $(STAMP)
	@for script in $(TEST_DEPS_SCRIPTS); do bash $$script || exit 1; done
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

# The multi-host Ray cluster tests alone, printing their measured times.
test-cluster: $(STAMP) $(TEST_DEPS_STAMP)
	$(PY) -m pytest tests/cluster -s -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist
