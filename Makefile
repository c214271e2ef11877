# make test   - create .venv, install fusedops (building the C extension) and run the suite,
#               then the CUDA tests again under Numba's simulator
# make demo   - install and run the main job (fusedops demo)
# make dist-check - build the sdist and the real wheel (compiles the C extension, ~1 min) and
#               check their file lists (tools/check_dist.py); `make test` checks the same lists
#               on a wheel built without the extension, in seconds (tests/test_dist.py)
# make mutate - mutation testing of the kernels and references in all four backends
#               (tools/mutate.py: hours; not part of make test). MUTATE_ARGS="--files csrc/optim.c"
# make bench  - pytest-benchmark suites, results saved as JSON under .benchmarks/ (compare two
#               runs with `make bench-compare`; FUSEDOPS_BENCH_SIZES=10000,1000000 for a quick run)
# make bench-mpi - the MPI suite under mpiexec -n $(NP) (default 2): Allreduce GB/s, epochs on 1 and N ranks
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fusedops-installed
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py)
PYTEST_ARGS ?=
# the PyTorch the fusedops.torch tests are verified against, pinned here (the test extra says
# only torch>=2.4): CI is reproducible, and pip never resolves an unpinned torch to a newer,
# multi-GB build by surprise. TORCH_SPEC= (empty) leaves it to the extra: any torch >= 2.4.
TORCH_SPEC ?= torch==2.13.0
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: install test test-cpu test-cudasim demo bench bench-mpi bench-compare info dist-check clean mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -q -e ".[test,mpi]" $(TORCH_SPEC)
	touch $@

install: $(STAMP)

test: test-cpu test-cudasim

test-cpu: $(STAMP)
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS)

test-cudasim: $(STAMP)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest tests -q -m cuda $(PYTEST_ARGS)

MUTATE_ARGS ?=
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py -j 2 $(MUTATE_ARGS)

demo: $(STAMP)
	$(BIN)/fusedops demo $(DEMO_ARGS)

# every run is saved as .benchmarks/<machine>/NNNN_<commit>.json; extra_info holds GB/s and
# the fraction of the bandwidth probe
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-autosave \
		--benchmark-group-by=group --benchmark-columns=median,iqr,min,rounds $(PYTEST_ARGS) $(BENCH_ARGS)

# data parallelism over MPI (benchmarks/test_distributed.py): every rank runs the suite, rank 0
# reports and saves; NP=4 make bench-mpi for more ranks
NP ?= 2
bench-mpi: $(STAMP)
	$(BIN)/mpiexec -n $(NP) $(BIN)/python -m pytest benchmarks/test_distributed.py --benchmark-only \
		--benchmark-autosave --benchmark-group-by=group --benchmark-columns=median,iqr,min,rounds \
		$(PYTEST_ARGS) $(BENCH_ARGS)

# the last two saved runs side by side (or: make bench-compare RUNS="0001 0003")
RUNS ?=
bench-compare: $(STAMP)
	$(BIN)/pytest-benchmark compare $(if $(RUNS),$(RUNS),$$(ls .benchmarks/*/*.json | tail -2)) \
		--group-by=group --columns=median,iqr,min

info: $(STAMP)
	$(BIN)/fusedops info

DIST_DIR := build/dist-check
# build/lib* goes too: setuptools packs everything it finds there, stale files of older builds
dist-check: $(STAMP)
	rm -rf $(DIST_DIR) build/lib.* build/bdist.*
	$(BIN)/python -m pip wheel . --no-deps --no-build-isolation -q -w $(DIST_DIR)
	$(BIN)/python -c "from setuptools import build_meta; build_meta.build_sdist('$(DIST_DIR)')"
	$(BIN)/python tools/check_dist.py $(DIST_DIR)/*.whl $(DIST_DIR)/*.tar.gz

clean:
	rm -rf $(VENV) build dist *.egg-info python/fusedops/_fusedops_c*.so .mutate
