# One entry point for each task. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install run test lint format typecheck docs-check check services coverage bench clean

help:
	@echo "make run        install into $(VENV) and serve on http://127.0.0.1:8000 (SQLite, development mode)"
	@echo "make test       install and run the whole test suite (starts PostgreSQL/Redis if down)"
	@echo "make lint       ruff lint and format check"
	@echo "make format     ruff format and autofix"
	@echo "make typecheck  mypy --strict on notifier/"
	@echo "make docs-check validate docs/asyncapi.yaml (AsyncAPI parser, npm) and the docs' links"
	@echo "make check      lint, typecheck, docs-check and test (what CI runs)"
	@echo "make coverage   unit and in-process tests with a coverage report"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/notifier serve

services:
	@bash scripts/services.sh

test: install services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

# The AsyncAPI Initiative's own parser, pinned in tools/asyncapi/package-lock.json
# (needs node >= 20 and npm; about 55 MB, under a minute to install).
docs-check: install
	cd tools/asyncapi && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	node tools/asyncapi/validate.mjs docs/asyncapi.yaml
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/test_docs.py

check: lint typecheck docs-check test

coverage: install services
	$(BIN)/coverage run -m pytest tests/core tests/test_auth.py -q
	$(BIN)/coverage report -m

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov tools/asyncapi/node_modules
