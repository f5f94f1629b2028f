# `make dev` and `make test` set up .venv on first use (and again when the lock file
# changes), so a fresh clone needs nothing but Python 3.11+. Installs come from
# requirements.lock (every package pinned, made by `make lock`), so what is installed is
# what was tested. `make test` is the fast tier (no process of its own); `make test-all`
# adds the real-process tier (dagster dev, the production topology, the browser), which CI
# runs. Both get what the tests need from the machine when they can (see `system`); what
# they cannot get is skipped with the reason (XMAS_STRICT_SKIPS=1, as CI sets it, turns
# those skips into failures).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test test-all lint lock bench system clean

$(STAMP): requirements.lock pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
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

# The fast tier: everything that needs no process of its own (the `slow` marker is the
# real-process tier).
test: $(STAMP) system lint
	$(BIN)/pytest -q -n 2 --dist worksteal -m "not slow"

# Everything, as CI runs it: the fast tier, then the real-process tier.
test-all: test
	$(BIN)/pytest -q -n 2 --dist loadfile -m slow --durations=15

# Pin every package again from pyproject.toml's ranges (the dev install and the image's).
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra deploy --python-version 3.11 \
	  --custom-compile-command "make lock" -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra deploy --python-version 3.11 \
	  --custom-compile-command "make lock" -q -o deploy/requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check xmas_pipeline xmas_pipeline_tests bench
	$(BIN)/ruff format --check xmas_pipeline xmas_pipeline_tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do PYTHONPATH=$(CURDIR) $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
