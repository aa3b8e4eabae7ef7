# Two commands do all set-up: `make demo` and `make test`. Both install the package into
# .venv when setup.py is newer than its last install there (.venv's stamp file) or none was
# made, first creating .venv when it is missing or its python does not run; then they run.
# `make demo` installs what the package needs; `make test` adds the test extra on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
# pytest-xdist workers (`make test JOBS=1` for one process): on 2 cores, 2 workers took the
# suite from 26 to 16 minutes, as much of it waits on subprocesses and TensorFlow start-up.
# With the JAX pass running beside it, 2 TensorFlow workers finish first (360 s against 366 s
# with 3, whose JAX pass then took 272 s instead of 206 s).
# Tests go to whichever worker is free (--dist loadgroup: the tests sharing one cold process,
# marked xdist_group("cold_python"), go to one worker), so one long file does not hold one.
JOBS ?= 2
# The JAX pass is mostly XLA compiling, which has threads of its own: alone, 2 workers took
# 105 s and 3 took 137 s; beside the TensorFlow pass it gets one worker.
JAX_JOBS ?= 1
# TensorFlow's threads per operation: each test process gets its share of the cores (1 here).
# More threads than cores only spin: with TensorFlow's default (every core per process), the
# fast tier took 727 s of CPU and 6.6 minutes; with 1 thread, 667 s and 6.1 minutes.
CORES := $(shell nproc 2>/dev/null || echo 2)
OP_THREADS ?= $(shell expr $(CORES) / \( $(JOBS) + $(JAX_JOBS) \) \| 1)
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test test-all bench bench-gpu clean

# uv installs the packages (pip installs uv): a fresh clone's test extra took 57 s with its
# downloads and bytecode, against 181-190 s for pip's own installer. Where uv cannot (it
# reads PyPI, not pip's configuration: a machine whose packages come from another index),
# pip does.
# uv compiles the modules' bytecode as pip does (it does not by default): without it every
# process compiled TensorFlow's modules again where PYTHONDONTWRITEBYTECODE is set, as on
# this machine, and make test-all ran at two thirds of its speed.
# (One run for the test extra, not the package then the extra: 15 s a run with pip.)
define install
	@$(BIN)/python -c "" 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@# --config-settings needs pip 22.1 (a venv of Ubuntu 22.04's Python has 22.0.2)
	$(PIP) "pip>=22.1"
	{ $(PIP) uv && $(BIN)/uv pip install --python $(BIN)/python -q -e "$(1)" \
		-C editable_mode=compat --compile-bytecode; } || $(PIP) -e "$(1)" --use-pep517 \
		--config-settings editable_mode=compat
endef

$(STAMP): setup.py
	$(call install,.)
	@touch $(STAMP)

# (the package's own requirements come with the test extra: the demo's stamp too)
$(TEST_STAMP): setup.py
	$(call install,.[test])
	@touch $(STAMP) $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/zoo demo

# JAX compiles one random-number kernel per weight shape when a model is built (0.46 s each
# here: 40 s for a GoogLeNet). The persistent cache lets the test processes share them, and
# JAX's older (non-partitionable) threefry compiles faster: the JAX pass took 105 s instead
# of 151 s. Only the random draws differ, and no test depends on those.
TEST_ENV = TF_NUM_INTRAOP_THREADS=$(OP_THREADS) JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(VENV)/jax-cache \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.1 JAX_THREEFRY_PARTITIONABLE=0
# The fast tier's graphs are tiny: compiling them costs more than running them. There it
# skips TensorFlow's graph optimiser (grappler: tests/conftest.py, for the test processes;
# 12 % of the CPU of the command, training and ensemble tests) and compiles JAX's programs
# without LLVM's optimisations (a ResNet-18's model test from an empty cache: 15 s of CPU
# instead of 23 s). `make test-all`, what CI runs, compiles every test as users' runs do.
FAST_TF_ENV = $(if $(TIER),,ZOO_TEST_GRAPPLER=off)
FAST_JAX_ENV = $(if $(TIER),,XLA_FLAGS=--xla_backend_optimization_level=0)

# The fast tier: every module at tiny sizes under TensorFlow and, beside it, the
# backend-agnostic tests (marked all_backends: models, layers, weight conversion, ensembles,
# metrics, crops, snapshots, export) under JAX. The two passes run at the same time (the
# TensorFlow pass alone keeps the 2 cores ~70 % busy: it waits on subprocesses and start-ups):
# 394 s instead of 456 s one after the other. The JAX pass's report is printed when both
# are done. `make test-all` adds the slow tier (TIER=--run-slow: the tests marked slow).
TIER ?=
JAX_LOG := $(VENV)/jax-pass.log
# Where the JAX pass also collects docstring examples: those of the layers' and the
# ensemble's modules are marked all_backends (conftest.py's BACKEND_AGNOSTIC_EXAMPLES).
JAX_EXAMPLES := zoo data ensembles
# Ctrl-C stops both passes: sh makes a background job ignore SIGINT, so the trap ends it.
test: $(TEST_STAMP)
	@$(TEST_ENV) $(FAST_JAX_ENV) KERAS_BACKEND=jax $(BIN)/python -m pytest -n $(JAX_JOBS) \
		--dist loadgroup -m all_backends tests $(JAX_EXAMPLES) $(TIER) > $(JAX_LOG) 2>&1 & \
		jax_pid=$$!; \
	trap 'kill $$jax_pid 2>/dev/null; exit 130' INT TERM; \
	echo "The JAX pass runs beside this one; its report (in $(JAX_LOG)) follows this one."; \
	$(TEST_ENV) $(FAST_TF_ENV) $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup $(TIER); \
	tensorflow=$$?; \
	wait $$jax_pid; jax=$$?; \
	echo; echo "===== the JAX pass (KERAS_BACKEND=jax -m all_backends) ====="; \
	cat $(JAX_LOG); \
	echo "TensorFlow pass: exit $$tensorflow; JAX pass: exit $$jax"; \
	test $$tensorflow -eq 0 && test $$jax -eq 0

# Everything, as CI runs it: the fast tier and the slow one (science tests on real digits,
# the kill test at every named point, the demo smoke run, the notebook, cross-process
# backend checks, the GPU benchmark's smoke run).
test-all: $(TEST_STAMP)
	$(MAKE) test TIER=--run-slow

bench: $(TEST_STAMP)  # (its JAX and ONNX Runtime rows need the test extra)
	$(BIN)/python benchmarks/run_all.py

# On a GPU machine: Keras on JAX (no TensorFlow needed), torchvision peers when importable.
# JAX would take 75 % of the GPU's memory for itself, and keep it while torchvision's peers
# run after it in the same process: half each. (On a short lease, two runs: see the README.)
# (python3 with a GPU build of JAX: not .venv's, whose JAX, from the test extra, is the CPU's)
bench-gpu:
	KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 $(PYTHON) benchmarks/gpu.py \
		--out benchmarks/gpu_results.csv

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
