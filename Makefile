# Shiyu 市域 — `make demo` and `make test` do all set-up on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
PORT   ?= 8000
BASE    = $(VENV)/.installed-base
DEV     = $(VENV)/.installed-dev

.PHONY: demo test install dev lint bench wrk fuzz crash clean

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(BASE): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $(BASE)

$(DEV): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BASE) $(DEV)

install: $(BASE)

dev: $(DEV)

demo: install
	$(VENV)/bin/shiyu db upgrade
	$(VENV)/bin/shiyu demo load --size small
	$(VENV)/bin/shiyu serve --host 127.0.0.1 --port $(PORT)

test: dev
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/pytest

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports

# Every script in benchmarks/ takes --json PATH and merges its figures into results.json,
# stamped with this run's id (SHIYU_BENCH_RUN); every script runs even when one fails, and
# the table at the end says which figures this run wrote. The intake benchmark drives the
# server with Debian's wrk, installed here when missing (as root).
bench: dev wrk
	@run=$$(date -u +%Y-%m-%dT%H:%M:%SZ); failed=""; \
	for f in benchmarks/*.py; do echo "== $$f"; \
	  SHIYU_BENCH_RUN=$$run $(PY) $$f --json benchmarks/results.json || failed="$$failed $$f"; done; \
	echo "== figures of run $$run"; \
	$(PY) tools/bench_table.py benchmarks/results.json --run $$run || failed="$$failed (figures missing)"; \
	if [ -n "$$failed" ]; then echo "bench failed:$$failed"; exit 1; fi

wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }; }; } || true
	@command -v wrk >/dev/null 2>&1 || echo "wrk is not installed and could not be: intake_http falls back to its httpx client"

# Fuzzing and crash testing (README "Fuzzing and crash testing"); .ci/run runs the short forms.
FUZZ_EXAMPLES  ?= 200
FUZZ_DB        ?= sqlite
FUZZ_ARGS      ?=
CRASH_ROUNDS   ?= 20
CRASH_REQUESTS ?= 1000
CRASH_DB       ?= both
CRASH_ARGS     ?=

fuzz: dev
	$(PY) tools/fuzz.py --db $(FUZZ_DB) --examples $(FUZZ_EXAMPLES) $(FUZZ_ARGS)

crash: dev
	$(PY) tools/crash.py --db $(CRASH_DB) --rounds $(CRASH_ROUNDS) --requests $(CRASH_REQUESTS) $(CRASH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
