# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Tests and the default job run offline: the tiny pairs are built here, nothing is fetched.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: run test lint clean

$(STAMP): pyproject.toml constraints/torch.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned by the constraints file, so nothing resolves a multi-GB CUDA build
	$(PY) -m pip install --quiet -c constraints/torch.txt torch
	$(PY) -m pip install --quiet -c constraints/torch.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(OFFLINE) $(VENV)/bin/harness run

test: $(STAMP)
	$(VENV)/bin/ruff check harness tests conftest.py $(wildcard suites benchmarks)
	$(OFFLINE) $(PY) -m pytest --baseline $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check harness tests conftest.py $(wildcard suites benchmarks)

clean:
	rm -rf $(VENV) reports .pytest_cache .benchmarks .hypothesis
