# Shiyu 市域 — `make demo` and `make test` do all set-up on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
PORT   ?= 8000
BASE    = $(VENV)/.installed-base
DEV     = $(VENV)/.installed-dev

.PHONY: demo test install dev lint bench fuzz crash clean

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

# Every script in benchmarks/ takes --json PATH and merges its figures into results.json.
bench: dev
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f --json benchmarks/results.json || exit 1; done

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
