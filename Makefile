# mmdetcon: `make demo` and `make test` bootstrap .venv on a fresh machine (idempotent), then run.
# Pretraining needs no compiled mmcv op, so `make venv` / `make demo` install mmcv-lite (seconds); mmdet does,
# so `make ops` (and `make test`, which runs the detection tests) builds full mmcv once and caches the wheel.
# The test-only packages (pytest, jax/dm-haiku) are installed by `make test` alone.
# Every pip call here takes requirements/constraints.txt: the exact versions the suite is tested with.
# `make ops` builds CPU-only ops (MMCV_CUDA_OPS=0: a CUDA build of every op takes hours on 2 cores); for GPU
# nodes run tools/install_mmcv.sh directly (README, "mmcv on a GPU cluster") or `make ops MMCV_CUDA_OPS=auto`.
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.mmdetcon-installed
OPS_STAMP := $(VENV)/.mmdetcon-ops
TEST_STAMP := $(VENV)/.mmdetcon-tests
CONSTRAINTS := $(CURDIR)/requirements/constraints.txt
MMCV_CUDA_OPS ?= 0
DEMO_CONFIG ?= configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py
PYTEST_ARGS ?=
export MMDETCON_CACHE ?= $(HOME)/.cache/mmdetcon

.PHONY: venv ops test demo demo-byol clean-venv

venv: $(STAMP)

# `install_mmcv.sh --lite` keeps a full mmcv that `make ops` installed earlier.
$(STAMP): requirements/runtime.txt requirements/constraints.txt pyproject.toml tools/install_mmcv.sh
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade "pip>=24"
	$(PYTHON) -m pip install -q -r requirements/runtime.txt -c $(CONSTRAINTS)
	CONSTRAINTS=$(CONSTRAINTS) PYTHON=$(PYTHON) bash tools/install_mmcv.sh --lite
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

ops: $(OPS_STAMP)

$(OPS_STAMP): $(STAMP) tools/mmcv_build.py
	MMCV_CUDA_OPS=$(MMCV_CUDA_OPS) CONSTRAINTS=$(CONSTRAINTS) PYTHON=$(PYTHON) bash tools/install_mmcv.sh
	@touch $@

$(TEST_STAMP): $(OPS_STAMP) requirements/tests.txt
	$(PYTHON) -m pip install -q -r requirements/tests.txt -c $(CONSTRAINTS)
	@touch $@

test: $(TEST_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PYTHON) tools/train.py $(DEMO_CONFIG) --work-dir work_dirs/demo

demo-byol: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PYTHON) tools/train.py configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py --work-dir work_dirs/demo-byol

clean-venv:
	rm -rf $(VENV)
