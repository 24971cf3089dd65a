# ltv-stream: `make run` (service + synthetic feed on local infra), `make test` (everything).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3
CODE := streams state ltv

.PHONY: install run test lint unit integration infra-up infra-down infra-status clean

# -qq: setuptools prints an advisory box on every editable install; pip
# still prints errors, and a failed install still fails the target.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -qq -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run

test: install lint
	scripts/test

lint: install
	$(BIN)/ruff check $(CODE) tests bench docs/examples
	$(BIN)/ruff format --check $(CODE) tests bench docs/examples
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

# Benchmarks (not tests): `make bench` runs them all, `make bench-throughput` one.
# Figures land in var/bench/NAME.json; README "Benchmarks" says what each means.
BENCHES := throughput latency recovery memory
.PHONY: bench $(addprefix bench-,$(BENCHES))

bench: $(addprefix bench-,$(BENCHES))

# latency paces its input at half the rate bench-throughput measured.
bench-latency: bench-throughput

$(addprefix bench-,$(BENCHES)): bench-%: install
	$(BIN)/ltv bench $* --json var/bench/$*.json $(BENCH_ARGS)
