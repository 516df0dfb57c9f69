# Rose Ash — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Web processes for `make run`: one per core, at most 4 (README: "Several workers").
WEB_CONCURRENCY ?= $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck worker migrate clean initial-migration

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("Rose Ash needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

# Node-based interop oracles (oauth4webapi, Fedify) for the federation tests; skipped without npm.
INTEROP_STAMPS := $(patsubst %/package.json,%/node_modules/.installed,$(wildcard tests/interop/*/package.json))

tests/interop/%/node_modules/.installed: tests/interop/%/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(dir $<) && npm install --silent --no-audit --no-fund --no-package-lock && touch node_modules/.installed; \
	else echo "npm not found: the interop tests in $(dir $<) will be skipped"; fi

install: $(STAMP) $(INTEROP_STAMPS)

migrate: $(STAMP)
	$(BIN)/rose-ash database upgrade --no-prompt

## Set up, migrate and serve on SQLite under ./var with an in-process job worker.
## The public origin follows HOST and PORT unless ROSE_ASH_BASE_URL says otherwise (handles, links).
run: migrate
	ROSE_ASH_BASE_URL="$${ROSE_ASH_BASE_URL:-http://$(HOST):$(PORT)}" ROSE_ASH_WORKER_IN_PROCESS=true \
	  $(BIN)/rose-ash run --host $(HOST) --port $(PORT) --web-concurrency $(WEB_CONCURRENCY)

## Set up and run the whole test suite (PostgreSQL/Redis legs when their URLs are set).
test: $(STAMP) $(INTEROP_STAMPS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

worker: $(STAMP)
	$(BIN)/rose-ash worker

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Pre-release only: rebuild the single initial migration from the models (no deployed databases yet).
initial-migration: $(STAMP)
	flock /tmp/rose-ash-initial-migration.lock sh -c '\
	  rm -f migrations/versions/*_initial_schema.py && rm -rf /tmp/rose-ash-migration-db && \
	  ROSE_ASH_DATA_DIR=/tmp/rose-ash-migration-db $(BIN)/rose-ash database make-migrations -m "initial schema" --no-prompt >/dev/null && \
	  ls migrations/versions/*_initial_schema.py'
