# mmdetcon: `make test` and `make demo` bootstrap .venv on a fresh machine (idempotent), then run.
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.mmdetcon-installed
DEMO_CONFIG ?= configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py
PYTEST_ARGS ?=
export MMDETCON_CACHE ?= $(HOME)/.cache/mmdetcon

.PHONY: venv test demo demo-byol clean-venv

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/tests.txt pyproject.toml tools/install_mmcv.sh
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade "pip>=24"
	$(PYTHON) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
	PYTHON=$(PYTHON) bash tools/install_mmcv.sh
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

test: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PYTHON) tools/train.py $(DEMO_CONFIG) --work-dir work_dirs/demo

demo-byol: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PYTHON) tools/train.py configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py --work-dir work_dirs/demo-byol

clean-venv:
	rm -rf $(VENV)
