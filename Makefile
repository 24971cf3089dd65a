# ltv-stream: `make run` (service + synthetic feed on local infra), `make test` (everything).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3
CODE := streams state ltv

.PHONY: install run test lint unit integration infra-up infra-down infra-status clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run

test: install lint
	scripts/test

lint: install
	$(BIN)/ruff check $(CODE) tests bench
	$(BIN)/ruff format --check $(CODE) tests bench
	$(BIN)/mypy $(CODE)

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	scripts/test tests/integration

infra-up:
	scripts/infra up

infra-down:
	scripts/infra down

infra-status:
	scripts/infra status

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
