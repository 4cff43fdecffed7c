# Each target sets up its own environment first (idempotent: seconds when done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint gpu-check

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

demo: setup
	$(PY) tools/train_demo.py

# One pytest worker per core: much of a test's time is single-threaded (imports, Python).
test: setup
	$(PY) -m pytest -n 2

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

# On a machine with an NVIDIA GPU (see scripts/gpu_check.sh); elsewhere it says it needs one.
gpu-check:
	@bash scripts/gpu_check.sh
