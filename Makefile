# `make dev` and `make test` set up .venv on first use (and again when the lock file
# changes), so a fresh clone needs nothing but Python 3.11+. Installs come from
# requirements.lock (every package pinned, made by `make lock`), so what is installed is
# what was tested. `make test` is the fast tier (no process of its own); `make test-all`
# runs it beside the real-process tier (dagster dev, the production topology, the
# browser), which is what CI runs. Both get what the tests need from the machine when
# they can (see `system`); what they cannot get is skipped with the reason
# (XMAS_STRICT_SKIPS=1, as CI sets it, turns those skips into failures).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test test-all tier-fast tier-slow lint lock bench system clean

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

# Bytecode: this package is installed editable, so nothing compiles it ahead, and where
# the machine sets PYTHONDONTWRITEBYTECODE (CI's does) every process the tests start (each
# run worker, code server and dev server) compiled all of it again, about a third of a
# second each, and pytest rewrote every test module in each worker. Tests and `make dev`
# write bytecode (an empty value switches the setting off).
dev test test-all tier-fast tier-slow: export PYTHONDONTWRITEBYTECODE :=

# The two tiers. Fast: everything that needs no process of its own (the `slow` marker is
# the real-process tier). Slow: real processes, three at a time, mostly waiting on real
# ticks and processes; its longest modules start first (see conftest.py).
FAST_TIER := $(BIN)/pytest -q -n 2 --dist worksteal -m "not slow"
SLOW_TIER := $(BIN)/pytest -q -n 3 --dist loadfile -m slow --durations=15

test: $(STAMP) system lint
	$(FAST_TIER)

# Everything, as CI runs it: lint, then both tiers side by side. The real-process tier
# leaves the cores idle most of the time, so the fast tier fills them at a lower CPU
# priority (nice), never delaying the processes whose timing the slow tests watch. Each
# tier's output is printed whole when it ends; the target fails if either does.
test-all: $(STAMP) system lint
	$(MAKE) --no-print-directory -j2 --output-sync=target tier-fast tier-slow

# Niced, a fast test may wait minutes for a core while the real-process tier is busy:
# its time-outs (guards against hangs) are three times as long there.
tier-fast: $(STAMP)
	XMAS_TIMEOUT_SCALE=3 nice -n 19 $(FAST_TIER)

tier-slow: $(STAMP)
	$(SLOW_TIER)

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
