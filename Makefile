# `make dev` and `make test` set up .venv on first use (and again when the dependencies
# change), so a fresh clone needs nothing but Python 3.11+. `make test` also gets what
# the tests need from the machine when it can (see `system`); what it cannot get is
# skipped with the reason (XMAS_STRICT_SKIPS=1, as CI sets it, turns those skips into
# failures).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test lint bench system clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,deploy]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/xmas-pipeline dev

# Headless Chromium for the UI tests (Debian packages; needs root), and the local
# PostgreSQL started if it is installed but stopped. Never fails: a test that still lacks
# its service says so itself.
system:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian packages) for the UI tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  || echo "could not install chromium: the UI tests will say so"; \
	else echo "no chromium (not root, or no apt-get): the UI tests will be skipped"; fi
	@if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start \
	  || echo "could not start PostgreSQL: its tests will say so"; fi

test: $(STAMP) system
	$(BIN)/ruff check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/ruff format --check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/ruff format --check xmas_pipeline xmas_pipeline_tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do PYTHONPATH=$(CURDIR) $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
