# fleetgate — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv pure services stop status topics browser monitoring asyncapi test test-unit demo lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The native decoder (native/, Rust): built as a wheel into .cache/native-wheel and installed
# when cargo is present; without it the pure-Python decoder runs (one line says so).
NATIVE_STAMP := $(VENV)/.native
NATIVE_WHEELS := .cache/native-wheel
$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@if command -v cargo >/dev/null 2>&1; then \
	  rm -f $(NATIVE_WHEELS)/fleetgate_native-*.whl; \
	  $(BIN)/maturin build -q --release -m native/Cargo.toml -i $(BIN)/python -o $(NATIVE_WHEELS) && \
	  $(BIN)/python -m pip install -q --force-reinstall --no-deps $(NATIVE_WHEELS)/fleetgate_native-*.whl && \
	  touch $@; \
	else echo "fleetgate: no cargo, so the native decoder is not built (pure Python runs); to enable it install Rust (https://rustup.rs) and rerun make venv"; fi

# The compiled fold (gates/compiled.py lists the modules): mypyc compiles them in place, next to
# their sources, when a C compiler is present; without one the same sources run interpreted.
# Rebuilt whenever a gates/ source changes (tests/conftest.py refuses a stale build).
FOLD_STAMP := $(VENV)/.fold
$(FOLD_STAMP): $(STAMP) setup.py $(wildcard gates/*.py)
	@rm -f gates/*.so
	@if $(BIN)/python -c 'import shutil, sys, sysconfig; sys.exit(not shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]))'; then \
	  mkdir -p .cache; \
	  if FLEETGATE_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace >.cache/fold-build.log 2>&1; then touch gates/*.so $@; \
	  else rm -f gates/*.so; echo "fleetgate: the fold did not compile (see .cache/fold-build.log); the pure-Python fold runs"; fi; \
	else echo "fleetgate: no C compiler, so the fold is not compiled (pure Python runs); to enable it install gcc and rerun make venv"; fi

venv: $(STAMP) $(NATIVE_STAMP) $(FOLD_STAMP) ## create the virtualenv, install fleetgate with its dev tools (and the compiled fold and native decoder when a C compiler and cargo are present)

pure: ## remove the compiled fold: the same gates/ sources run interpreted (until the next make venv)
	rm -f gates/*.so $(FOLD_STAMP)

services: ## start local Kafka (KRaft, Maven jars) and Redis; idempotent
	scripts/services.sh start

stop: ## stop the Kafka and Redis (and demo processes) this project started
	-@scripts/demo.sh stop 2>/dev/null || true
	-@scripts/sasl.sh stop 2>/dev/null || true
	scripts/services.sh stop

status: ## show whether the services are up
	@scripts/services.sh status

topics: venv services ## create every topic (idempotent)
	$(BIN)/fleetgate topics create

browser: ## Debian's chromium, for the HTML report's browser test (installed when missing)
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium for the report test"; fi; }

monitoring: ## Debian's prometheus (+ promtool) and alertmanager, for the alert and rule tests (installed when missing)
	@{ command -v promtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus prometheus-alertmanager) >/dev/null; \
	  else echo "prometheus/alertmanager missing: install Debian's prometheus and prometheus-alertmanager"; fi; }

# The AsyncAPI parser that validates docs/asyncapi.yaml (tests/contract), with its Avro schema parser.
ASYNCAPI_DIR := .cache/asyncapi
ASYNCAPI_PARSER := 3.6.6
ASYNCAPI_AVRO := 3.1.0
ASYNCAPI_STAMP := $(ASYNCAPI_DIR)/.installed-$(ASYNCAPI_PARSER)-$(ASYNCAPI_AVRO)

asyncapi: $(ASYNCAPI_STAMP) ## npm's @asyncapi/parser into .cache/asyncapi (needs Node.js >= 18)

$(ASYNCAPI_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js (>= 18) for the AsyncAPI check"; exit 1; }
	npm install --prefix $(ASYNCAPI_DIR) --no-audit --no-fund --loglevel=error \
	  @asyncapi/parser@$(ASYNCAPI_PARSER) @asyncapi/avro-schema-parser@$(ASYNCAPI_AVRO)
	@touch $@

test: venv services topics browser monitoring asyncapi ## the whole test suite against the real broker and Redis
	$(BIN)/python -m pytest

test-unit: venv ## the pure tests only (no services)
	$(BIN)/python -m pytest -m "not kafka and not redis"

demo: venv services topics ## run the end-to-end demo (worker, executor, simulator)
	scripts/demo.sh run

lint: venv ## ruff, ruff format --check and mypy (strict on gates/ and streams/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv services topics ## run every benchmark (prints figures; not part of CI)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: stop ## stop services and remove caches, data and the virtualenv
	rm -rf .cache $(VENV) .pytest_cache .mypy_cache .ruff_cache build gates/*.so
