# make demo   install into .venv, then run the whole ELPV competition on CPU (configs/elpv_cpu.yaml)
# make test   install into .venv (with test tools), then run the test suite (TEST_WORKERS=2 processes)
# make test-fast  the tests that train no model (under a minute)
# make test-other-cpu  the fast tier and the numeric tests again, as another CPU's kernels round (CI runs it)
# make lint   ruff check (CI runs it before the tests)
# make docs   serve the docs site at http://127.0.0.1:8000 (make docs-build: mkdocs build --strict into site/)
# make bench  throughput and blend-speed benchmarks (figures in bench/results/)
# make gpu-kit-check  the GPU kit end to end on CPU under the GPU machine's torch (README, GPU kit);
#                     (GPU_PY=/path/to/python3.12 where neither python3.12 nor pyenv's 3.12 runs)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= configs/elpv_cpu.yaml
# the first Python 3.12 that runs: python3.12 on the PATH, else pyenv's (whose shim refuses it unless selected)
GPU_PY  ?= $(firstword $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
            $$p -c '' 2>/dev/null && echo $$p; done) python3.12)
GPU_VENV ?= .venv-gpu
# make test's pytest-xdist workers: a test module each at a time, each worker on its own share of the cores
# (tests/conftest.py), so that two never run more threads than the cores (on 2 cores: 1 thread each)
TEST_WORKERS ?= 2

# Another CPU imitated on this one (defectkit.testing.OTHER_CPU; tests/test_code_shape.py keeps the two equal)
OTHER_CPU := ONEDNN_MAX_CPU_ISA=SSE41 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

.PHONY: demo test test-fast test-other-cpu lint docs docs-build bench install install-dev clean gpu-kit-check

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/python src/run.py --config $(CONFIG)

test: install-dev
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow" tests

test-other-cpu: install-dev
	$(OTHER_CPU) $(BIN)/python -m pytest -q -m "not slow or numeric" tests

lint: install-dev
	$(BIN)/ruff check src tests bench

docs: install-dev
	$(BIN)/mkdocs serve

docs-build: install-dev
	$(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/blend_speed.py

$(GPU_VENV)/.installed: bench/gpu/requirements-gpu-machine.txt
	$(GPU_PY) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install --quiet -r bench/gpu/requirements-gpu-machine.txt
	touch $@

gpu-kit-check: install $(GPU_VENV)/.installed
	GPU_VENV=$(GPU_VENV) bash bench/gpu/check.sh

clean:
	rm -rf $(VENV) $(GPU_VENV)
