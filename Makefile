# The two README commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test api-fuzz lint format install install-dev clean-demo

run: install instance/config.py
	$(BIN)/authserver demo
	$(BIN)/authserver run --host $(HOST) --port $(PORT)

test: install-dev
	@echo "== the whole suite, on every core (pytest-xdist); the 10 slowest tests at the end"
	$(BIN)/pytest -p no:cacheprovider -n auto --dist worksteal --durations=10

# Schemathesis over /v1/openapi.json (every check, fixed seed) as a guest, a customer and
# an owner, against the app on a loopback port with the test database and Redis.
api-fuzz: install-dev
	@echo "== schemathesis over /v1/openapi.json as a guest, a customer and an owner"
	$(BIN)/pytest -p no:cacheprovider -q tests/api/fuzz_openapi.py

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
