# The two commands: `make run` (the whole centre with simulators at http://127.0.0.1:8000)
# and `make test` (the same setup, then every check CI runs). Both are idempotent.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
VENV := .venv/bin

.PHONY: setup run test lint typecheck contracts pytest e2e clean-state

setup:
	@bash scripts/provision.sh

run: setup
	@$(VENV)/ioc dev

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy

contracts:
	$(VENV)/lint-imports

pytest:
	$(VENV)/python -m pytest -ra

test: setup lint typecheck contracts pytest

e2e: setup
	$(VENV)/python -m pytest -ra tests/e2e

clean-state:
	-$(VENV)/ioc services down
	rm -rf .state
