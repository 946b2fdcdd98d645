# Two commands for a fresh machine:  `make serve` runs Doable,  `make test` runs every test.
# Each creates .venv and installs what it needs (pinned by constraints.txt) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov pins packaging<24, which clashes with pytest 9: it lives in a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov

.PHONY: serve test lint bench install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

$(CHECKOV):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/doable serve

test: $(STAMP) $(CHECKOV)
	DOABLE_CHECKOV=$(abspath $(CHECKOV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check doable mcp_server agent workers tests bench

# Benchmarks (issue 7): every benchmark, JSON to bench/results/latest.json and a table; see bench/README.md.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--quick --only mcp,search"`.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build *.egg-info
