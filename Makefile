# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The test environment's exact versions (pip-tools, refreshed by `make lock`); torch stays pinned by
# constraints/torch.txt, whose CPU build lies on the build machines. `make drift` (LOCK empty) installs
# the newest releases instead, as the nightly drift job does. Users install the package's own ranges.
LOCK ?= constraints/lock.txt
PINS := -c constraints/torch.txt $(if $(LOCK),-c $(LOCK))
PYTEST_ARGS ?=
# Each lane of `make test` lists its slowest tests, so that a slow machine's log says where the time went.
TEST_TIMES := --durations=10

# Tests and the default job run offline: the tiny pairs are built here, nothing is fetched.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# The test run starts about thirty Python processes. Where the environment forbids bytecode files, each of them
# compiled the project's modules anew, and pytest rewrote the assertions of the plugin's package (177 modules)
# anew: 1.8 s more for each pytest process (measured: the unit tests 222 s against 199 s). They are cached in
# __pycache__ (git-ignored) as usual instead.
unexport PYTHONDONTWRITEBYTECODE

# Both cores, one process each: the slow, cacheable steps of the test run (building the tiny pairs, their
# profiles, the LoRA studies) run first as two single-threaded lanes writing into the harness cache, where the
# tests then find them. Small models keep one thread busy with Python overhead, so two lanes of one thread do
# nearly twice the work of one process with two; a third process would only take turns with them (measured on
# a 2-vCPU machine: each build 2.6 times slower beside two other processes than alone). The lanes share the
# LoRA studies as they go (`tune --share`: a run another lane is training is passed over), and a pair or a
# control that both lanes need is built once (the other waits for it). A lane that fails only costs time:
# pytest redoes (and reports) the step.
LANE := $(OFFLINE) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/harness
# The LoRA studies the suites read: the tiny pair's and the planted pairs' (built from it); the second lane
# takes them in reverse order.
TUNED := tiny_olmo2,planted_lora_mid_block,planted_lora_edges,planted_lora_retention,planted_lora_middle_forgets
TUNED_REVERSED := planted_lora_middle_forgets,planted_lora_retention,planted_lora_edges,planted_lora_mid_block,tiny_olmo2
WARM_OUT := reports/warm

.PHONY: run test lint clean warm setup lock drift controls-across-builds nightly-calibration

# pip installs without compiling bytecode: it would compile every module of every package (about 52 s of one
# core here, most of it for modules no test imports), while Python compiles what is imported, once, into
# __pycache__ (measured: set-up 101 s against 49 s; the first import of the stack 8.5 s against 18.6 s).
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile
# The rest of the set then goes in through uv, which installs the same pinned versions (the constraints pin every
# package) in seconds where pip takes half a minute (measured from a fresh clone: 6 s against 31 s, the two
# environments' `pip freeze` identical). uv does not read pip's configuration: where it cannot reach the registry
# that pip is configured for, pip installs the set as before.
UV := uv==0.13.9
UV_INSTALL := $(VENV)/bin/uv pip install --quiet --python $(PY)

$(STAMP): pyproject.toml constraints/torch.txt $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned by the constraints file, so nothing resolves a multi-GB CUDA build
	$(PIP_INSTALL) -c constraints/torch.txt torch $(UV)
	$(UV_INSTALL) $(PINS) -e '.[dev]' || $(PIP_INSTALL) $(PINS) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# One command, one reviewed commit: the newest releases that the package's ranges admit, written as exact pins.
lock:
	test -x .venv-lock/bin/pip-compile || ( $(PYTHON) -m venv .venv-lock && \
	  .venv-lock/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0 )
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --upgrade --extra dev --strip-extras \
	  --unsafe-package torch --no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
	  -c constraints/torch.txt -o constraints/lock.txt pyproject.toml

# The newest releases against the lock: which packages moved, then every test in an unlocked environment.
drift:
	$(MAKE) --no-print-directory setup VENV=.venv-latest LOCK=
	.venv-latest/bin/python .ci/lock_drift.py constraints/lock.txt
	$(MAKE) --no-print-directory test VENV=.venv-latest LOCK=

run: $(STAMP)
	$(OFFLINE) $(VENV)/bin/harness run

# The tests that load no model (the metrics' and predicates' own tests, the calibration and coverage
# simulations) run in the second lane, whose build is the shorter, between its build and its share of the
# LoRA studies, on one process (HARNESS_WORKERS=1).
# Model-free tests run beside the builds and the LoRA tuning, one process per lane: the calibration (the longest)
# in the first lane once tiny_olmo2 is built, the others in the second once tiny_mistral is profiled; each lane
# then joins the shared tuning, so the two lanes end together.
CALIBRATION_TESTS := tests/test_calibration.py
PURE_TESTS := tests/test_coverage.py tests/test_claims.py tests/test_lora_claims.py tests/test_dose_response.py tests/test_controls.py \
	tests/test_depth.py tests/test_directional.py tests/test_metrics.py tests/test_data.py tests/test_tokenizer.py \
	tests/test_pinned_numerics.py tests/test_across_builds.py tests/test_cka_coverage.py suites/test_metric_invariants.py
MODEL_FREE := $(OFFLINE) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HARNESS_WORKERS=1 $(PY) -m pytest
PURE_RUN := $(MODEL_FREE) $(PURE_TESTS) $(TEST_TIMES) $(PYTEST_ARGS)
CALIBRATION_RUN := $(MODEL_FREE) $(CALIBRATION_TESTS) $(TEST_TIMES) $(PYTEST_ARGS)

warm: $(STAMP)
	mkdir -p $(WARM_OUT)
	( $(LANE) build --pair tiny_olmo2; \
	  $(CALIBRATION_RUN) > $(WARM_OUT)/calibration.log 2>&1; echo $$? > $(WARM_OUT)/calibration.rc; \
	  $(LANE) tune --share --pairs $(TUNED) ) > $(WARM_OUT)/lane1.log 2>&1 & one=$$!; \
	( $(LANE) build --pair tiny_mistral; $(LANE) profile --pair tiny_mistral --out $(WARM_OUT)/tiny_mistral.json; \
	  $(PURE_RUN) > $(WARM_OUT)/pure.log 2>&1; echo $$? > $(WARM_OUT)/pure.rc; \
	  $(LANE) tune --share --pairs $(TUNED_REVERSED) ) > $(WARM_OUT)/lane2.log 2>&1 & two=$$!; \
	wait $$one; wait $$two; true

# Then the unit tests that load models run beside the claim suites, which compare the tiny pairs with their
# baselines and check every planted control. The benchmarks are shared between them so that both finish
# together (measured: 3:52 and 2:22 with every benchmark beside the unit tests, 3:14 and 3:50 with the
# profile-speed ones beside the suites; 3:26 and 3:42 once the swap scores were cached, before the LoRA
# speed ones joined the suites; at 3fe89ca, 4:22 and 5:10 with every benchmark beside the suites, so the
# shape-scale one, 18 s, runs beside the unit tests; at ef835af, 4:02 and 4:07, before the unit tests ran their
# pytest sessions in process, 45 s less, so the profile-overhead one, 22 s, joined them). Every lane runs on one
# thread: a second thread waits for a core the other lane holds (a resampled verdict took three times as long
# with two).
UNIT_BENCHMARKS := benchmarks/test_shape_scale.py benchmarks/test_profile_overhead.py
UNIT_TESTS := $(filter-out $(PURE_TESTS) $(CALIBRATION_TESTS),$(wildcard tests/test_*.py)) $(UNIT_BENCHMARKS)

# The code's checks (one core for about 14 s from a fresh clone) run beside the warm-up instead of before it, where
# the other core would idle; CI's workflow runs `make lint` on its own first, for a quick answer.
test: $(STAMP)
	rm -f $(WARM_OUT)/pure.rc $(WARM_OUT)/calibration.rc $(WARM_OUT)/lint.rc
	mkdir -p $(WARM_OUT)
	( $(MAKE) --no-print-directory lint > $(WARM_OUT)/lint.log 2>&1; echo $$? > $(WARM_OUT)/lint.rc ) & lint=$$!; \
	$(MAKE) --no-print-directory warm; wait $$lint
	cat $(WARM_OUT)/lint.log $(WARM_OUT)/calibration.log $(WARM_OUT)/pure.log
	test "$$(cat $(WARM_OUT)/lint.rc)" = 0
	test "$$(cat $(WARM_OUT)/calibration.rc)" = 0 && test "$$(cat $(WARM_OUT)/pure.rc)" = 0
	( $(OFFLINE) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(UNIT_TESTS) $(TEST_TIMES) $(PYTEST_ARGS) \
	  > $(WARM_OUT)/units.log 2>&1; echo $$? > $(WARM_OUT)/units.rc ) & units=$$!; \
	$(OFFLINE) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest --baseline suites benchmarks $(addprefix --ignore=,$(PURE_TESTS) $(UNIT_BENCHMARKS)) \
	  $(TEST_TIMES) $(PYTEST_ARGS); \
	claims=$$?; wait $$units; cat $(WARM_OUT)/units.log; \
	test $$claims = 0 && test "$$(cat $(WARM_OUT)/units.rc)" = 0

# The calibration and coverage at their nightly sizes (HYPOTHESIS_PROFILE=nightly, every core): 1,000 simulations
# without an effect, 500 per boundary design at 16, 32 and 64 layers (C1's also at N = 1,000 with D = 1,024),
# power at 16 layers, coverage at a 7B model's width. Hours of CPU: the nightly calibration workflow splits it into
# four jobs (the calibration, C1 at N = 1,000 with 16 and 32 layers, with 64 layers, and the coverage).
NIGHTLY_TESTS ?= $(CALIBRATION_TESTS) tests/test_coverage.py tests/test_cka_coverage.py
nightly-calibration: $(STAMP)
	$(OFFLINE) HYPOTHESIS_PROFILE=nightly $(PY) -m pytest $(NIGHTLY_TESTS) $(PYTEST_ARGS)

# Every planted control on independent builds of the tiny pairs (one kernel setting and one cache each), with
# each answer's margin: reports/builds/margins.md. About 15 minutes a build on 2 cores.
BUILDS ?= native avx2 default
controls-across-builds: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m harness.plants.across_builds --builds $(BUILDS) --out reports/builds

# The code's own checks: lint, formatting (`ruff format` rewrites), and the types of the metrics and verdicts
# (pyproject.toml's [tool.mypy] names them). `make test` runs them beside its warm-up.
CODE := harness pytest_layerwise_sft tests conftest.py scripts $(wildcard suites benchmarks)
lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) reports .pytest_cache .benchmarks .hypothesis
