# Two commands on a fresh machine with python3 and make:
#   make demo   - create .venv, install, run the whole pipeline on the local world
#   make test   - install the dev and spark extras and run the whole test suite
#   make test-fast - only the fast tier (pytest -m fast: in-memory Arrow and hypothesis, about 40 s)
# The tests also read every table with a second Iceberg reader that shares no code with ours
# (DuckDB's iceberg extension, from PyPI): it lives in its own venv, .venv-readers (make readers).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
READERS := .venv-readers
READERS_INSTALLED := $(READERS)/.installed

.PHONY: demo test test-fast install readers dev bench emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(INSTALLED): setup.py pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_INSTALLED): setup.py pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $@ $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/ddb-assets demo

$(READERS_INSTALLED):
	$(PYTHON) -m venv $(READERS)
	$(READERS)/bin/pip install --quiet --upgrade pip
	$(READERS)/bin/pip install --quiet 'duckdb==1.5.5' 'duckdb-extension-iceberg==1.5.5' 'duckdb-extension-avro==1.5.5' 'pytz>=2024'
	touch $@

readers: $(READERS_INSTALLED)

test: $(DEV_INSTALLED) $(READERS_INSTALLED)
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
	rm -rf $(VENV) $(READERS) .pytest_cache .hypothesis build *.egg-info
