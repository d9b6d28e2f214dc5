# Boxwise: `make run` serves the dashboard, `make test` runs the whole suite.
# Both set themselves up on a fresh machine (Python 3.11 venv in .venv; Debian's chromium for
# the browser tests). Data lives in $(BOXWISE_DATA), default ./data.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BOXWISE_DATA ?= ./data
PORT ?= 8501
export BOXWISE_DATA

.PHONY: run test test-fast lint install install-test chromium bench demo clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test chromium

# Debian's chromium, driven by pip's playwright: no browser download.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@chromium --version

run: install
	$(PY) serve.py --server.port $(PORT) --server.headless true \
	  --browser.gatherUsageStats false

test: install-test
	$(PY) -m pytest

# The quick loop: no test marked slow (over ~20 s) or e2e (a real browser).
test-fast: install-test
	$(PY) -m pytest -m "not slow and not e2e"

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

demo: install
	$(PY) -m backend demo

bench: install
	$(PY) bench/run_all.py

# The pipeline.config schema: regenerate backend/pipeline_schema/protos/*_pb2.py (checked in)
# from the .proto files with grpcio-tools (requirements-test.txt).
.PHONY: proto
proto: $(VENV)/.installed-test
	$(PY) -m grpc_tools.protoc -I. --python_out=. backend/pipeline_schema/protos/*.proto
	$(PY) -m grpc_tools.protoc -I. --python_out=. backend/tf_protos/*.proto
