# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Tests and the default job run offline: the tiny pairs are built here, nothing is fetched.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Both cores: the slow, cacheable steps of the test run (building the tiny pairs, their profiles, the
# default LoRA study) run first as two single-threaded lanes, each writing its results to the harness cache,
# where the tests then find them. Small models keep one thread busy with Python overhead, so two lanes of one
# thread do nearly twice the work of one process with two. A lane that fails only costs time: pytest redoes
# (and reports) the step.
LANE := $(OFFLINE) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/harness
WARM_OUT := reports/warm

.PHONY: run test lint clean warm

$(STAMP): pyproject.toml constraints/torch.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned by the constraints file, so nothing resolves a multi-GB CUDA build
	$(PY) -m pip install --quiet -c constraints/torch.txt torch
	$(PY) -m pip install --quiet -c constraints/torch.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(OFFLINE) $(VENV)/bin/harness run

warm: $(STAMP)
	mkdir -p $(WARM_OUT)
	( $(LANE) build --pair tiny_olmo2 > $(WARM_OUT)/lane1.log 2>&1 ) & one=$$!; \
	( $(LANE) build --pair tiny_mistral > $(WARM_OUT)/lane2.log 2>&1 ) & two=$$!; \
	wait $$one; wait $$two; \
	( $(LANE) tune --pair tiny_olmo2 --seeds 0 1 --report-dir $(WARM_OUT) >> $(WARM_OUT)/lane1.log 2>&1 ) & one=$$!; \
	( $(LANE) profile --pair tiny_mistral --out $(WARM_OUT)/tiny_mistral.json >> $(WARM_OUT)/lane2.log 2>&1; \
	  $(LANE) tune --pair tiny_olmo2 --seeds 2 --report-dir $(WARM_OUT) >> $(WARM_OUT)/lane2.log 2>&1 ) & two=$$!; \
	wait $$one; wait $$two; true

test: warm
	$(VENV)/bin/ruff check harness tests conftest.py $(wildcard suites benchmarks)
	$(OFFLINE) $(PY) -m pytest --baseline $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check harness tests conftest.py $(wildcard suites benchmarks)

clean:
	rm -rf $(VENV) reports .pytest_cache .benchmarks .hypothesis
