# `make dev` and `make test` set up .venv on first use (and again when the dependencies
# change), so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/xmas-pipeline dev

test: $(STAMP)
	$(BIN)/ruff check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/ruff format --check xmas_pipeline xmas_pipeline_tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
