# Ripple's commands. The two a new user needs: `make up` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# `make up EMULATOR=moto` or `EMULATOR=localstack`; `make up PERSIST=1` keeps DynamoDB Local's data;
# `make up UP_ARGS="--quiet --api-port 3001"` passes any other option of `python -m ripple_local up`.
EMULATOR ?= dynamodb-local
PERSIST ?=
UP_ARGS ?=
# Test processes (pytest-xdist, a file per worker): the suite waits on emulators and Redis as
# much as it computes, so even 2 cores halve its time; capped, as each worker runs its own
# emulators and stacks.
TEST_WORKERS ?= $(shell python3 -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: bootstrap up test test-contract test-fast lint typecheck clean

bootstrap:
	@bash infra/bootstrap.sh

## Bring the whole feed up locally: DynamoDB Local :8000, moto :4566, Redis, tables, API :3000,
## stream runners.
up: bootstrap
	@$(if $(filter localstack,$(EMULATOR)),$(PY) -m ripple_local.tools install-localstack)
	@$(PY) -m ripple_local up --emulator $(EMULATOR) $(if $(filter 1 yes true,$(PERSIST)),--persist) $(UP_ARGS)

## Lint, type-check, then run the whole test suite (unit, integration, end-to-end) on the
## default emulators (DynamoDB Local + moto), then its contract subset on moto alone and on
## LocalStack; starting the emulators and Redis it needs itself.
test: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/ripple/ripple infra/local/ripple_local functions/api/app.py
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	bash infra/test-contract.sh

## The contract subset alone, on moto and LocalStack.
test-contract: bootstrap
	bash infra/test-contract.sh

## Unit tests only (no services).
test-fast: bootstrap
	$(PY) -m pytest tests/unit

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/ripple/ripple infra/local/ripple_local functions/api/app.py

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .aws-sam

## The benchmark: starts its own local stack on free ports, drives it over HTTP and writes
## bench/report.md and its plots (about 12 minutes; not part of `make test`).
bench: bootstrap
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	$(PY) -m bench run

## The benchmark's smoke run (tiny parameters, under a minute), as a test.
bench-smoke: bootstrap
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	$(PY) -m pytest tests/bench_smoke -q

.PHONY: bench bench-smoke
