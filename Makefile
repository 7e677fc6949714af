# fsnb: `make demo` sets everything up and runs the quickstart; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fsnb-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Never let a tool download a browser: tests use Debian's /usr/bin/chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo lab labext test test-py test-ts lint system-deps install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# The Spark engine's JVM (pyspark 4 needs Java 17 or newer); only the headless runtime.
	@if ! command -v java >/dev/null; then \
	  echo "installing Debian package: openjdk-17-jre-headless"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; \
	fi

demo: install
	$(BIN)/python -m fsnb.demo notebooks/quickstart.ipynb

lab: install labext
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: install
	$(BIN)/ruff check fsnb tests bench
	$(BIN)/mypy

# JupyterLab extension (labextension/): eslint + tsc, then a build into fsnb/labextension/,
# linked into the venv so the browser tests run the current TypeScript (jupyter-builder:
# `jupyter labextension develop/build` are deprecated).
JLPM := PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/jlpm
test-ts: install
	cd labextension && $(JLPM) install && $(JLPM) check && $(JLPM) build:prod
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter builder develop --overwrite . >/dev/null

# Rebuild the extension from the current TypeScript (make lab serves what you just edited).
labext: install
	cd labextension && $(JLPM) install && $(JLPM) build:prod
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter builder develop --overwrite . >/dev/null

test-py: install system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests

test: lint test-ts test-py

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
