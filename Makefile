# StreamDx — two commands: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint typecheck demo stack clean fuzz-api

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		echo "note: the browser tests (tests/browser) are skipped without Chromium: sudo apt-get install chromium"
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not evaluation and not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

demo: $(STAMP)
	$(VENV)/bin/streamdx demo

stack: $(STAMP)
	$(VENV)/bin/streamdx stack up

fuzz-api: $(STAMP)
	$(PY) -m pytest -q tests/integration/test_ingest_schemathesis.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
