# Two commands on a fresh machine with python3 and make:
#   make demo   - create .venv, install, run the whole pipeline on the local world
#   make test   - install the dev extras and run the whole test suite
#   make test-fast - only the fast tier (pytest -m fast: in-memory Arrow and hypothesis, under 2 min)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev

.PHONY: demo test test-fast install dev bench emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(INSTALLED): setup.py pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_INSTALLED): setup.py pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/ddb-assets demo

test: $(DEV_INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(DEV_INSTALLED)
	$(BIN)/pytest -m fast $(PYTEST_ARGS)

dev: $(INSTALLED)
	scripts/dev.sh

emulator: $(INSTALLED)
	$(BIN)/ddb-assets emulator

bench: $(INSTALLED)
	$(BIN)/python bench/run_benchmark.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
