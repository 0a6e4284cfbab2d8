# diskport - the two commands a newcomer needs: `make run` (local mode) and `make test`.
# Each target installs what it needs first (a Python 3.13 virtualenv, qemu-img).

SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0

PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 || command -v python3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup qemu-img run demo test test-fast lint build deploy bench load fuzz clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.13 (or 3.12) is needed: install it, or set PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) qemu-img ## create .venv with the service and its development tools

qemu-img: ## tests build their disk images with qemu-img (Debian/Ubuntu package qemu-utils)
	@command -v qemu-img >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-utils; }

run: setup ## local mode in the foreground: the API on 127.0.0.1:3000, the AWS emulator on :5000 (LOCAL_API_PORT, LOCAL_AWS_PORT)
	$(BIN)/diskport serve

demo: setup ## import a sample image through the CLI, export it, and compare the bytes (starts local mode if none runs)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup ## run the whole test suite
	$(BIN)/pytest -n 2 --dist loadfile -q

test-fast: setup ## the unit tests alone
	$(BIN)/pytest -q tests/unit

lint: setup ## ruff, mypy, and the template checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam validate --lint

build: setup ## sam build (offline apart from the package registry)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --build-dir .aws-sam/build
	$(BIN)/python scripts/check_layer.py .aws-sam/build/DiskportLayer/python

# First deployment: `make deploy GUIDED=1` (asks for stack name, region and parameters, saves samconfig.toml).
# Later: `make deploy`, or `make deploy PARAMETERS="SourceBuckets=images-a,images-b MaxActiveJobs=20"`.
deploy: build ## sam deploy of the built stack
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam deploy --template-file .aws-sam/build/template.yaml \
	  $(if $(GUIDED),--guided,) --capabilities CAPABILITY_IAM \
	  $(if $(PARAMETERS),--parameter-overrides $(PARAMETERS),)

bench: setup qemu-img ## engine and import benchmarks; the last line is the engine/qemu-img speed ratio
	$(BIN)/python bench/import_bench.py
	$(BIN)/python bench/throughput_bench.py
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
