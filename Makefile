# The two README commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test api-fuzz bench lint format install install-dev clean-demo

# The issuer (discovery, tokens, emailed links) follows HOST and PORT unless
# AUTHSERVER_ISSUER or instance/config.py sets it: the environment would beat the file, so
# it is exported only when neither does. A wildcard HOST is served on 127.0.0.1 as well.
ISSUER_HOST = $(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST))

run: install instance/config.py
	@if [ -z "$${AUTHSERVER_ISSUER:-}" ] && $(BIN)/python -c "import runpy, sys; \
	    sys.exit('ISSUER' in runpy.run_path('instance/config.py'))"; then \
	  export AUTHSERVER_ISSUER=http://$(ISSUER_HOST):$(PORT); \
	  echo "AUTHSERVER_ISSUER=$$AUTHSERVER_ISSUER"; \
	fi; \
	$(BIN)/authserver demo && exec $(BIN)/authserver run --host $(HOST) --port $(PORT)

test: install-dev
	@echo "== the whole suite, on every core (pytest-xdist); the 10 slowest tests at the end"
	$(BIN)/pytest -p no:cacheprovider -n auto --dist worksteal --durations=10

# Schemathesis over /v1/openapi.json (every check, fixed seed) as a guest, a customer and
# an owner, against the app on a loopback port with the test database and Redis.
api-fuzz: install-dev
	@echo "== schemathesis over /v1/openapi.json as a guest, a customer and an owner"
	$(BIN)/pytest -p no:cacheprovider -q tests/api/fuzz_openapi.py

# authserver side by side with the node oidc-provider peer (../shared/bench-peer), in one
# run, with the local PostgreSQL and Redis (README "Benchmarks"). Never part of `make test`.
# BENCH_ARGS="--quick", "--baseline REV", "--scenarios a,b", ... (bench/compare.py --help).
BENCH_ARGS ?=
bench: install-dev
	@command -v wrk >/dev/null || { echo "make bench needs wrk: sudo apt-get install wrk"; exit 1; }
	@command -v npm >/dev/null || { echo "make bench needs node and npm: sudo apt-get install nodejs npm"; exit 1; }
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

# A random secret key for the local quick start, made once and kept out of git.
instance/config.py:
	@mkdir -p instance
	@umask 077 && $(BIN)/python -c "import secrets; print('SECRET_KEY = %r' % secrets.token_urlsafe(48))" > $@
	@echo "Wrote instance/config.py with a random SECRET_KEY"

# Forget the demo data and the embedded database (keeps config and keys).
clean-demo:
	rm -f instance/authserver.sqlite3 instance/demo.json
