# make test   - create .venv, install fusedops (building the C extension) and run the suite,
#               then the CUDA tests again under Numba's simulator
# make demo   - install and run the main job (fusedops demo)
# make bench  - pytest-benchmark suites, results saved as JSON under .benchmarks/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fusedops-installed
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py)
PYTEST_ARGS ?=

.PHONY: install test test-cpu test-cudasim bench info clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(STAMP)

test: test-cpu test-cudasim

test-cpu: $(STAMP)
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS)

test-cudasim: $(STAMP)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest tests -q -m cuda $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

info: $(STAMP)
	$(BIN)/fusedops info

clean:
	rm -rf $(VENV) build dist *.egg-info python/fusedops/_fusedops_c*.so
