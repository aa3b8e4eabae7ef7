# Two commands do all set-up: `make demo` and `make test`. Both (re)create .venv when it
# is missing, broken, or older than setup.py, install the package into it, then run.
# `make demo` installs what the package needs; `make test` adds the test extra on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
# pytest-xdist workers (`make test JOBS=1` for one process): on 2 cores, 2 workers take the
# suite from 26 to 16 minutes, as much of it waits on subprocesses and TensorFlow start-up;
# a third worker fills the cores while the others wait.
# Tests go to whichever worker is free (--dist load), so one long file does not hold a worker.
JOBS ?= 3
# The JAX pass is mostly XLA compiling, which has threads of its own: 2 workers took 105 s,
# 3 took 137 s.
JAX_JOBS ?= 2
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test test-all bench bench-gpu clean

$(STAMP): setup.py
	@$(BIN)/python -c "" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PIP) -e . --use-pep517 --config-settings editable_mode=compat
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) -e ".[test]" --use-pep517 --config-settings editable_mode=compat
	@touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/zoo demo

# JAX compiles one random-number kernel per weight shape when a model is built (0.46 s each
# here: 40 s for a GoogLeNet). The persistent cache lets the test processes share them, and
# JAX's older (non-partitionable) threefry compiles faster: the JAX pass took 105 s instead
# of 151 s. Only the random draws differ, and no test depends on those.
JAX_CACHE := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(VENV)/jax-cache \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.1 JAX_THREEFRY_PARTITIONABLE=0

# The fast tier: every module at tiny sizes under TensorFlow, then the backend-agnostic
# tests (marked all_backends: models, layers, weight conversion, ensembles, metrics, crops,
# snapshots, export) under JAX. `make test-all` adds the slow tier (TIER=--run-slow: the
# tests marked slow).
TIER ?=
test: $(TEST_STAMP)
	$(JAX_CACHE) $(BIN)/python -m pytest -n $(JOBS) --dist load $(TIER)
	$(JAX_CACHE) KERAS_BACKEND=jax $(BIN)/python -m pytest -n $(JAX_JOBS) --dist load \
		-m all_backends tests $(TIER)

# Everything, as CI runs it: the fast tier and the slow one (science tests on real digits,
# the kill test at every named point, the demo smoke run, the notebook, cross-process
# backend checks, the GPU benchmark's smoke run).
test-all: $(TEST_STAMP)
	$(MAKE) test TIER=--run-slow

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# On a GPU machine: Keras on JAX (no TensorFlow needed), torchvision peers when importable.
bench-gpu:
	KERAS_BACKEND=jax python3 benchmarks/gpu.py --out benchmarks/gpu_results.csv

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
