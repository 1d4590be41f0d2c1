# make demo   install into .venv, then run the whole ELPV competition on CPU (configs/elpv_cpu.yaml)
# make test   install into .venv (with test tools), then run the test suite
# make lint   ruff check (CI runs it before the tests)
# make bench  throughput and blend-speed benchmarks (figures in bench/results/)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CONFIG  ?= configs/elpv_cpu.yaml

.PHONY: demo test lint bench install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/python src/run.py --config $(CONFIG)

test: install-dev
	$(BIN)/python -m pytest -q tests

lint: install-dev
	$(BIN)/ruff check src tests bench

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/blend_speed.py

clean:
	rm -rf $(VENV)
