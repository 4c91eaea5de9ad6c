# One entry point for each task. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install run test lint format typecheck docs-check check services coverage bench clean \
	client client-check client-test chromium nginx

help:
	@echo "make run        install into $(VENV) and serve on http://127.0.0.1:8000 (SQLite, development mode)"
	@echo "make test       install and run the whole test suite (starts PostgreSQL/Redis if down)"
	@echo "make lint       ruff lint and format check"
	@echo "make format     ruff format and autofix"
	@echo "make typecheck  mypy --strict on notifier/"
	@echo "make docs-check validate docs/asyncapi.yaml (AsyncAPI parser, npm) and the docs' links"
	@echo "make client     build the browser client (clients/js, npm) into notifier/_static/"
	@echo "make client-check  rebuild the client and fail if the committed build differs"
	@echo "make client-test   the client's tests (node --test) against a real notifier serve"
	@echo "make check      lint, typecheck, docs-check, client-check, client-test and test (what CI runs)"
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

# Two phases (scripts/test.sh): everything but the fault tests on two xdist workers,
# then the fault tests alone (they restart PostgreSQL and Redis).
test: install services chromium
	PYTHON=$(BIN)/python bash scripts/test.sh $(PYTEST_ARGS)

# Debian's chromium for the browser tests (tests/browser, Playwright drives it; no
# browser is downloaded). Installed only where it is missing; that needs root: CI
# (CI=true) fails without it, elsewhere the browser tests are skipped with a warning.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || { test -z "$$CI" && echo "warning: no /usr/bin/chromium: browser tests will be skipped"; }

# Debian's nginx for tests/e2e/test_nginx.py (the SSE stream through deploy/nginx.conf),
# installed the same way: CI fails without it, elsewhere that test is skipped.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx \
	  || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; } \
	  || { test -z "$$CI" && echo "warning: no nginx: the nginx test will be skipped"; }

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

# The browser client: TypeScript in clients/js, built by esbuild (the module) and
# dts-bundle-generator (its types), pinned in clients/js/package-lock.json. The build is
# committed in notifier/_static/ (it ships in the wheel; the service serves it).
CLIENT := clients/js
NPM_CI := npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
# node 20 has WebSocket behind a flag; later versions have it on.
NODE_WS = $$(node -e 'process.stdout.write(typeof WebSocket === "undefined" ? "--experimental-websocket" : "")')

$(CLIENT)/node_modules/.package-lock.json: $(CLIENT)/package-lock.json
	cd $(CLIENT) && $(NPM_CI)

client: $(CLIENT)/node_modules/.package-lock.json
	cd $(CLIENT) && npm run --silent typecheck && npm run --silent build
	cp $(CLIENT)/dist/client.js $(CLIENT)/dist/client.d.ts notifier/_static/

client-check: $(CLIENT)/node_modules/.package-lock.json
	cd $(CLIENT) && npm run --silent typecheck && npm run --silent build
	@diff -u notifier/_static/client.js $(CLIENT)/dist/client.js >/dev/null && \
	  diff -u notifier/_static/client.d.ts $(CLIENT)/dist/client.d.ts >/dev/null || \
	  { echo "notifier/_static/client.* is stale: run \`make client\` and commit it"; exit 1; }

client-test: install client-check
	cd $(CLIENT) && node $(NODE_WS) --test test/*.test.mjs

check: lint typecheck docs-check client-check client-test test

coverage: install services
	$(BIN)/coverage run -m pytest tests/core tests/test_auth.py -q
	$(BIN)/coverage report -m

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov tools/asyncapi/node_modules \
		$(CLIENT)/node_modules $(CLIENT)/dist test-results
