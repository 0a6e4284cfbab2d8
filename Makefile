# diskport - the two commands a newcomer needs: `make run` (local mode) and `make test`.
# Each target installs what it needs first (a Python 3.13 virtualenv, qemu-img).

SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0

PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 || command -v python3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup qemu-img asl-validator run demo test test-fast lint build deploy bench load fuzz clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.13 (or 3.12) is needed: install it, or set PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) qemu-img ## create .venv with the service and its development tools

# The state machine validator `make lint` runs (npm, pinned by .ci/package-lock.json); `make run` needs no Node.js.
ASL_VALIDATOR := .ci/node_modules/.bin/asl-validator
asl-validator: $(ASL_VALIDATOR)
$(ASL_VALIDATOR): .ci/package.json .ci/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed for the state machine validator"; exit 1; }
	npm ci --prefix .ci --no-audit --no-fund --loglevel=error
	touch $(ASL_VALIDATOR)

qemu-img: ## tests build their disk images with qemu-img (Debian/Ubuntu package qemu-utils)
	@command -v qemu-img >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-utils; }

run: setup ## local mode in the foreground: the API on 127.0.0.1:3000, the AWS emulator on :5000 (LOCAL_API_PORT, LOCAL_AWS_PORT); LOCAL_AUTH=aksk verifies IMS AK/SK signatures
	$(BIN)/diskport serve

demo: setup ## import a sample image through the CLI, export it, and compare the bytes (starts local mode if none runs)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup ## run the whole test suite
	$(BIN)/pytest -n 2 --dist loadfile -q

test-fast: setup ## the unit tests alone, in parallel like `make test`
	$(BIN)/pytest -n 2 -q tests/unit

lint: setup asl-validator ## ruff, mypy, and the template checks (as written, SAM-transformed, and the ASL after substitution)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam validate --lint
	$(BIN)/python scripts/lint_stack.py

build: setup ## sam build (offline apart from the package registry)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --build-dir .aws-sam/build
	$(BIN)/python scripts/check_layer.py .aws-sam/build/DiskportLayer/python

# `make deploy` deploys stack STACK_NAME (default diskport) to the AWS CLI's region (or REGION=...), with a
# deployment bucket SAM makes and reuses (--resolve-s3): no samconfig.toml needed (docs/deploying.md).
# `make deploy GUIDED=1` asks for everything and saves the answers in samconfig.toml, which later runs use.
# Parameters: `make deploy PARAMETERS="SourceBuckets=images-a,images-b MaxActiveJobs=20"`.
STACK_NAME ?= diskport
deploy: build ## sam deploy of the built stack (STACK_NAME, REGION, PARAMETERS, GUIDED=1)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam deploy --template-file .aws-sam/build/template.yaml \
	  $(if $(GUIDED),--guided,) --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  $(if $(or $(GUIDED),$(wildcard samconfig.toml)),,--stack-name $(STACK_NAME) --resolve-s3) \
	  $(if $(REGION),--region $(REGION),) \
	  $(if $(PARAMETERS),--parameter-overrides $(PARAMETERS),)

bench: setup qemu-img ## engine and import benchmarks; the last line is the engine/qemu-img speed ratio
	$(BIN)/python bench/import_bench.py
	$(BIN)/python bench/zero_entries_bench.py
	$(BIN)/python bench/throughput_bench.py
	$(BIN)/python bench/local_throughput_bench.py
	$(BIN)/python bench/local_import_wait_bench.py
	$(BIN)/python bench/pipeline_model.py
	$(BIN)/python bench/engine_bench.py

load: setup qemu-img ## 200 concurrent creates and 50 concurrent imports against local mode (loopback), with figures
	$(BIN)/python bench/load_bench.py $(LOAD_OPTIONS)

# The CI run fuzzes the parsers 150 examples a property; this runs FUZZ_EXAMPLES of each, then atheris (coverage
# guided) for FUZZ_SECONDS; crashes land in .fuzz/ for replay.
FUZZ_EXAMPLES ?= 5000
FUZZ_SECONDS ?= 600
fuzz: setup qemu-img ## long parser fuzzing: hypothesis (FUZZ_EXAMPLES) then atheris (FUZZ_SECONDS)
	DISKPORT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/fuzz
	$(BIN)/pip install --quiet 'atheris>=2.3'
	mkdir -p .fuzz/corpus
	$(BIN)/python -m tests.fuzz.atheris_parsers -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	  -artifact_prefix=.fuzz/ .fuzz/corpus

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
