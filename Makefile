# Two commands matter: `make run` (everything locally) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test chaos lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[local]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/provisioner up

test: $(VENV)/.installed-dev
	@scripts/ensure-redis-server $(BIN)/python
	$(BIN)/python -m pytest -q

# The fault-injection tests alone (they are part of `make test` too; docs/reliability.md).
chaos: $(VENV)/.installed-dev
	@scripts/ensure-redis-server $(BIN)/python
	$(BIN)/python -m pytest -q -m chaos

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check service workers sandbox tests benchmarks
	$(BIN)/ruff format --check service workers sandbox tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy --strict service workers sandbox

check: lint typecheck test

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache
