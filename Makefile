# Two commands matter: `make run` (everything locally) and `make test` (the whole suite).
PYTHON ?= python3
# The suite runs in parallel processes (pytest-xdist): most tests wait on processes and
# Graph latency, not on the CPU, so three share two cores well and halve the wall time.
TEST_WORKERS ?= 3
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
	@scripts/ensure-chromium
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

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

# Benchmarks (docs/benchmarks.md): each target rewrites its own section and PNGs.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

# What every benchmark runs on besides Python: a redis-server, and wrk for the intake load.
bench-tools: $(VENV)/.installed-bench
	@scripts/ensure-redis-server $(BIN)/python
	@scripts/ensure-wrk

.PHONY: bench bench-tools bench-throttle bench-intake bench-e2e bench-worker bench-scale bench-soak bench-profile bench-listing bench-latency

bench: bench-throttle bench-intake bench-e2e bench-worker bench-scale bench-soak bench-listing bench-latency

bench-throttle: bench-tools
	$(BIN)/python -m benchmarks.throttle $(BENCH_ARGS)

bench-intake: bench-tools
	$(BIN)/python -m benchmarks.intake $(BENCH_ARGS)

bench-e2e: bench-tools
	$(BIN)/python -m benchmarks.e2e $(BENCH_ARGS)

bench-worker: bench-tools
	$(BIN)/python -m benchmarks.worker_cost $(BENCH_ARGS)

bench-scale: bench-tools
	$(BIN)/python -m benchmarks.scaleout $(BENCH_ARGS)

bench-soak: bench-tools
	$(BIN)/python -m benchmarks.soak $(BENCH_ARGS)

bench-listing: bench-tools
	$(BIN)/python -m benchmarks.listing $(BENCH_ARGS)

bench-latency: bench-tools
	$(BIN)/python -m benchmarks.latency $(BENCH_ARGS)

bench-profile: bench-tools
	$(BIN)/python -m benchmarks.profile $(BENCH_ARGS)
