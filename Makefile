# Two commands for a fresh machine:  `make serve` runs Doable,  `make test` runs every test.
# Each creates .venv and installs what it needs (pinned by constraints.txt) on first use:
# `make serve` the app alone, `make test` the app with its test and benchmark extras (the suite runs
# a benchmark smoke test), `make bench` the same as `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP  := $(VENV)/.installed-test
# checkov pins packaging<24, which clashes with pytest 9: it lives in a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov

.PHONY: serve test lint bench install prereqs clean mcpb

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Doable needs Python >= 3.11 (this is %d.%d): apt-get install python3, or make PYTHON=python3.11" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	@# A current pip resolves the pins in about half the time of the one a venv starts with.
	$(PIP) install --quiet --upgrade pip

# What running needs, nothing else.
$(SERVE_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing Doable into $(VENV) (first run only)"
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

# The test and benchmark extras on top (their install covers the app's, so serve's stamp is current too).
$(TEST_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "installing Doable with its test and benchmark extras into $(VENV) (first run only)"
	$(PIP) install --quiet -c constraints.txt -e ".[test,bench]"
	touch $@ $(SERVE_STAMP)

$(CHECKOV):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check install --quiet "checkov==3.3.30"

install: $(TEST_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/doable serve

# The Claude Desktop bundle, dist/doable.mcpb: validated and packed by the MCPB CLI that
# packaging/mcpb/package-lock.json pins (needs npm); packaging/mcpb/build.py says what is inside.
mcpb: $(SERVE_STAMP)
	$(BIN)/python packaging/mcpb/build.py --out dist/doable.mcpb

# The machine's prerequisites (PostgreSQL server binaries, Chromium), before any install: one line
# naming what is missing and how to install it. tests/prereqs.py says what each one is for.
prereqs:
	@$(PYTHON) tests/prereqs.py

# No database to set up: without DOABLE_TEST_PG the suite starts (and removes) a PostgreSQL cluster
# of its own from the installed server binaries (tests/pg_cluster.py).
test: prereqs
	$(MAKE) --no-print-directory $(TEST_STAMP) $(CHECKOV)
	$(MAKE) --no-print-directory lint
	DOABLE_CHECKOV=$(abspath $(CHECKOV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Style over the whole tree (the sidecar double included), types (mypy --strict with the pydantic
# plugin, [tool.mypy]) and the layer contracts ([tool.importlinter]); `make test` runs it first.
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Benchmarks (issue 7): every benchmark, JSON to bench/results/latest.json and a table; see bench/README.md.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--quick --only mcp,search"`.
bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build dist *.egg-info
