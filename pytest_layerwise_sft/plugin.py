"""The pytest side of the harness: options, markers, the session object and the fixtures.

Each pair is a session-scoped fixture parameter carrying its own marker, so
``pytest suites -m olmo2_7b`` selects one pair and its profile is computed
once for every suite. With no ``-m``, the real-model parameters are
deselected and one line at the end says how to select them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import config as harness_config
from harness import options, verification
from harness.errors import BadInputError
from harness.lora import arm_jobs
from harness.lora import study as lora_study
from harness.measure.profile import ProfileOptions
from harness.output import reports
from harness.plants.build import register
from harness.plants.catalogue import CONTROLS, LADDERS, control_pooled_samples, ladder_rungs
from harness.sources import models
from harness.sources.data import PROBE_SETS, token_samples_of
from harness.verdicts import claims, dose_response, registry, regression

REAL_MARKERS = (*models.REAL_PAIRS, "custom")
DEFAULT_TUNED = ("tiny_olmo2",)  # the pairs whose LoRA arms a plain run trains (minutes on 2 CPU cores)
PAIR_PARAMS = [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in (*models.REGISTRY, "custom")]


def _control_params(answers) -> list:
    """The planted controls (ladder rungs aside) that answer at least one claim ``answers`` accepts."""
    return [
        pytest.param(name, marks=pytest.mark.controls, id=name)
        for name, control in CONTROLS.items()
        if control.ladder is None and any(map(answers, control.expected))
    ]


def _family(claim: str) -> str:
    """The claim registry's calibration family of a planted answer's key (layers, directional, swap, lora)."""
    return registry.claim(claim).family


# The profile controls of C1, C2, C7 and the directional suite; C5 and C6 have their own built pairs.
CONTROL_PARAMS = _control_params(lambda claim: claim in ("C1", "C2", "C7") or _family(claim) == "directional")
EMERGENCE_CONTROL_PARAMS = _control_params(lambda claim: claim == "C5")
STAGES_CONTROL_PARAMS = _control_params(lambda claim: claim == "C6")
LADDER_RUNGS = {name for name, control in CONTROLS.items() if control.ladder is not None}  # figured as a ladder
LADDER_PARAMS = [pytest.param(name, marks=pytest.mark.controls, id=name) for name in LADDERS]
LORA_CONTROL_PARAMS = _control_params(lambda claim: _family(claim) == "lora")
SWAP_CONTROL_PARAMS = [
    pytest.param(name, marks=pytest.mark.controls, id=name)
    for name, control in CONTROLS.items()
    if any(_family(claim) == "swap" for claim in control.expected)
]
# Suite arguments whose values are a list of the claims config: a suite's test asks for the argument and is
# collected once per value any pair is configured with (defaults, each model's own, and --set, which wins)
CONFIGURED_LISTS = {"swap_segments": ("C3", "segment_counts"), "lora_segments": ("C4", "inverted_u_counts")}


def pytest_addoption(parser):
    group = parser.getgroup("harness", "layer-wise SFT claims")
    group.addoption("--base", help="base checkpoint (hub id or folder) for the 'custom' pair; select it with -m custom")
    group.addoption(
        "--sft", help="SFT checkpoint (hub id or folder) for the 'custom' pair; alone when it is a PEFT adapter"
    )
    group.addoption("--device", default="auto", help="auto (GPU with device_map=auto when present), cpu, cuda")
    group.addoption("--dtype", default=None, help="model dtype (default: the pair's own, bfloat16 for real models)")
    group.addoption("--probe-set", default="gsm8k-local", choices=PROBE_SETS, help="probe texts for the profiles")
    options.add_options(group.addoption, options.PROBE_OPTIONS)
    group.addoption("--report-dir", default="reports", help="where each session writes its report and figures")
    group.addoption(
        "--baseline",
        action="store_true",
        help="regression mode: compare every metric and verdict with the stored baseline",
    )
    group.addoption("--baselines-dir", default="baselines", help="where baselines are stored, one folder per pair")
    group.addoption(
        "--update-baselines",
        action="store_true",
        help="write the measured pairs as the new baselines (the only way a baseline changes)",
    )
    options.add_options(group.addoption)  # the same table of options as the command line's
    group.addoption(
        "--tune",
        action="append",
        default=None,
        metavar="PAIR",
        help="pairs whose LoRA arms are trained for C4 and C8 (repeatable; default: tiny_olmo2). "
        "A study trains every arm with every seed: minutes on the tiny pair, GPU-hours on a 7B one",
    )
    options.add_options(group.addoption, options.STUDY_OPTIONS)
    group.addoption(
        "--inconclusive",
        choices=("fail", "xfail", "pass"),
        default="fail",
        help="what a claim whose interval straddles its threshold does in verification mode: fail "
        "(default: nothing unproven shows green), xfail (shown as x, with the reason), or pass",
    )


class ClaimSession:
    """Reads every option once; measures each pair once; collects what the report will hold."""

    def __init__(self, config: pytest.Config):
        option = config.option
        self.base, self.sft = option.base, option.sft
        self.device, self.dtype = option.device, option.dtype
        models.check_device(self.device)  # a device or dtype this machine cannot run: refused before any test
        if self.dtype is not None:
            models.resolve_dtype(self.dtype)
        self.probe_set = option.probe_set
        self.pooled_samples, self.token_samples = option.pooled_samples, option.token_samples
        verification.check_verifiable_samples(self.pooled_samples)
        self.report_dir = Path(option.report_dir)
        reports.check_report_dir(self.report_dir)  # refused at the start, not after the last test
        self.regression = option.baseline
        self.baselines_dir = Path(option.baselines_dir)
        self.update_baselines = option.update_baselines
        if self.update_baselines:
            reports.check_report_dir(self.baselines_dir, "baselines folder")
        elif self.regression and self.baselines_dir.exists() and not self.baselines_dir.is_dir():
            raise BadInputError(f"--baselines-dir {self.baselines_dir} is a file, not a folder of baselines")
        self.claims_config = options.claims_config_of(vars(option))
        self.tune_pairs = option.tune or list(DEFAULT_TUNED)
        for name in self.tune_pairs:  # a misspelt pair would only skip its LoRA suites, saying nothing of it
            if name == "custom" and not self.base:
                raise BadInputError(
                    "--tune custom trains the pair of --base and --sft: give both (or --sft alone, a PEFT adapter)"
                )
            if name not in (*models.REGISTRY, *CONTROLS, "custom"):
                raise BadInputError(
                    f"--tune {name}: no such pair; it takes a registered pair (`harness list`), a planted "
                    "control, or custom (the pair of --base and --sft)"
                )
        self.tune_segments = option.tune_segments
        self.jobs_settings = arm_jobs.JobSettings(executor=option.tune_executor, workers=option.tune_workers)
        self.inconclusive = option.inconclusive
        self.measured: dict[str, verification.Measured] = {}
        self.swaps: dict[str, verification.SwapMeasured] = {}
        self.studies: dict[str, lora_study.LoraStudy] = {}
        self.baselines: dict[str, dict] = {}
        self.dose_responses: dict[str, dict[str, list[dict]]] = {}  # ladder -> claim -> one row per rung
        self.unavailable: dict[str, str] = {}
        self.refused: dict[str, str] = {}  # pairs that are bad input (wrong layout, NaN weights, corrupt files)
        self.deselected_note = ""
        self.failed: dict[str, int] = {}  # failed tests per pair: such a pair's baseline is never rewritten
        self.interrupted = False
        self.baseline_notes: list[str] = []

    def spec(self, name: str) -> models.ModelSpec:
        if name == "custom":
            if not (self.base and self.sft):
                pytest.fail("the custom pair needs --base and --sft (hub ids or local folders)", pytrace=False)
            return models.custom_pair(self.base, self.sft)
        register()  # the planted controls become pairs the registry can name, once a test asks for a pair
        return models.get_spec(name)

    def options(self, spec: models.ModelSpec) -> ProfileOptions:
        pooled_samples = control_pooled_samples(spec.name, self.pooled_samples)
        return ProfileOptions(
            probe_set=self.probe_set,
            pooled_samples=pooled_samples,
            token_samples=token_samples_of(pooled_samples, self.token_samples),
            dtype=self.dtype or spec.dtype,
        )

    def _once(self, store: dict, name: str, make):
        """Measure ``name`` once per session. A registered pair that cannot be had here is skipped, with its
        reason, every time; the pair the user named with --base/--sft is an error instead (a typo must not
        pass as a skip)."""
        if name not in store and name not in self.refused and name not in self.unavailable:
            spec = self.spec(name)
            try:
                store[name] = make(spec)
            except models.ModelUnavailableError as error:
                self.unavailable[name] = str(error)
            except BadInputError as error:
                self.refused[name] = f"{name} is refused: {error}"
        if name in self.unavailable:  # outside the handler: the message alone, not the error it replaces
            self._unavailable(name)
        if name in self.refused:  # one line per test of the pair, no traceback
            pytest.fail(self.refused[name], pytrace=False)
        return store[name]

    def _unavailable(self, name: str):
        if name == "custom":
            pytest.fail(f"the pair named with --base/--sft cannot be loaded: {self.unavailable[name]}", pytrace=False)
        pytest.skip(self.unavailable[name])

    def measure(self, name: str) -> verification.Measured:
        return self._once(
            self.measured,
            name,
            lambda spec: verification.measure(spec, self.options(spec), self.device, claims_config=self.claims_config),
        )

    def measure_swaps(self, name: str) -> verification.SwapMeasured:
        return self._once(
            self.swaps,
            name,
            lambda spec: verification.measure_swaps(spec, self.device, self.dtype, claims_config=self.claims_config),
        )

    def study(self, name: str) -> lora_study.LoraStudy:
        if name not in self.tune_pairs and name not in CONTROLS:  # a planted study is always trained
            spec = self.spec(name)
            reason = None if spec.is_built_locally else models.unavailable_reason(spec)
            if reason:  # a pair that cannot be had here says so first: --tune alone would not run it
                self.unavailable.setdefault(name, reason)
                self._unavailable(name)
            pytest.skip(
                f"the LoRA arms of {name} are not trained in this run (C4 and C8 train every arm with every "
                f"seed): ask for them with --tune {name} (once per pair to train), or run "
                f"`harness tune --pair {name}`"
            )

        def make(spec):
            profile = self.measure(name).profile.pair  # the block finder reads the pair profile
            study = lora_study.study_pair(
                spec,
                profile,
                harness_config.thresholds_for(name, self.claims_config),
                self.device,
                self.dtype,
                self.tune_segments,
                jobs_settings=self.jobs_settings,
            )
            study.run()  # this run asked for the pair's arms (--tune, or a planted control): train them now
            return study

        return self._once(self.studies, name, make)

    def ladder(self, name: str) -> list[tuple[float, verification.Measured]]:
        """The rungs of the dose-response ladder ``name``, each measured once per session, by dose."""
        return [(rung.dose, self.measure(rung.name)) for rung in ladder_rungs(name)]

    def baseline(self, name: str) -> dict:
        """The stored baseline of ``name``, read once per session. A pair built here is compared with the
        baseline of its own build; with none stored for this machine's build, its regression tests skip."""
        if name not in self.baselines:
            build = self.build_of(name)
            note = regression.missing_build_note(self.baselines_dir, name, self.probe_set, build)
            self.baselines[name] = note or regression.load_baseline(
                regression.baseline_path(self.baselines_dir, name, self.probe_set, build)
            )
        if isinstance(self.baselines[name], str):
            pytest.skip(self.baselines[name])
        return self.baselines[name]

    def build_of(self, name: str, section: dict | None = None) -> str | None:
        """The build of a pair the harness builds here (None for a pair loaded from the hub or a folder)."""
        spec = self.spec(name)
        if not spec.is_built_locally:
            return None
        weights = (section or {}).get("pair", {})
        if "base_weights" not in weights:
            resolved = models.resolve_pair(spec, progress=False)
            weights = {
                "base_weights": models.weights_fingerprint(resolved.base),
                "sft_weights": models.weights_fingerprint(resolved.sft),
            }
        return regression.build_of(weights)

    def finish(self) -> list[Path]:
        """Write the reports (atomically), figures, summaries, and baselines if asked.

        Each pair gets ``<report dir>/<pair>/<UTC time>-<commit>/`` (the planted controls share one, under
        ``controls``), with a ``latest`` pointer beside it.
        """
        if not self.measured and not self.swaps and not self.studies:
            return []
        sections, evidence = {}, {}
        for name in sorted({*self.measured, *self.swaps, *self.studies}):
            swaps = self.swaps.get(name)
            study = self.studies.get(name)
            parts = {
                "measured": self.measured.get(name),
                # planned, never scored (every test that needed it was refused or failed first): left out
                "swaps": swaps if swaps is not None and swaps.results else None,
                # never run, or cut off (Ctrl-C, a failed job): reading it never trains, so it is left out
                "study": study if study is not None and study.has_run else None,
            }
            if any(part is not None for part in parts.values()):
                sections[name], evidence[name] = verification.pair_section(**parts)
        groups: dict[str, list[str]] = {}
        for name in sections:
            groups.setdefault("controls" if name in CONTROLS else name, []).append(name)
        written = []
        from harness.output import plots  # matplotlib is imported only when a run has figures to draw

        for group, names in sorted(groups.items()):
            folder = reports.run_folder(self.report_dir, group)
            report = verification.claims_report(
                {name: sections[name] for name in names}, evidence={name: evidence[name] for name in names}
            )
            if group == "controls" and self.dose_responses:
                report["dose_response"] = self.dose_responses
                written += [
                    plots.dose_response_figure(ladder, responses, folder / f"{ladder}-dose-response.png")
                    for ladder, responses in sorted(self.dose_responses.items())
                ]
            written.append(reports.write_report(folder / "report.json", report))
            studies = {name: self.studies[name] for name in names if name in self.studies and "lora" in sections[name]}
            pairs = {n: self.measured[n] for n in names if n in self.measured and n not in LADDER_RUNGS}
            written += plots.write_figures(folder, pairs, studies)
            written += plots.write_swap_figures(folder, {n: self.swaps[n] for n in names if n in self.swaps})
            reports.point_latest(folder)
        if self.update_baselines:
            for name, section in sections.items():
                if name in CONTROLS:
                    continue  # controls are verified against their known answer, never against a baseline
                refusal = regression.baseline_refusal(
                    name, section, self.failed.get(name, 0), self.interrupted, name in self.tune_pairs
                )
                if refusal:
                    self.baseline_notes.append(f"baseline of {name} not written: {refusal}")
                    continue
                written.append(
                    regression.write_baseline(
                        regression.baseline_path(
                            self.baselines_dir, name, self.probe_set, self.build_of(name, section)
                        ),
                        section,
                    )
                )
        return written


def pytest_configure(config):
    try:  # an SFT given alone as a PEFT adapter names its base: the rest of the session sees both
        named = models.pair_locations(config.option.base, config.option.sft)
    except BadInputError as error:
        raise pytest.UsageError(str(error)) from None
    if named is not None:
        config.option.base, config.option.sft = named
    for name, spec in models.REGISTRY.items():  # so that -m PAIR works (and --strict-markers passes) anywhere
        config.addinivalue_line("markers", f"{name}: the {name} pair ({spec.base.describe()} / {spec.sft.describe()})")
    config.addinivalue_line("markers", "custom: the pair named with --base and --sft")
    config.addinivalue_line("markers", "controls: planted pairs whose answer is known")
    try:
        config.harness_session = ClaimSession(config)
    except BadInputError as error:  # a claims config or setting that cannot be read
        raise pytest.UsageError(str(error)) from None


def configured_values(claims_config: dict, claim: str, key: str) -> list:
    """Every value of the list ``claim.key`` that the defaults or any model's entry configure (after --set)."""
    names = ["defaults", *(claims_config.get("models") or {})]
    values = {value for name in names for value in harness_config.thresholds_for(name, claims_config)[claim][key]}
    return sorted(values)


def pytest_generate_tests(metafunc):
    for argument, (claim, key) in CONFIGURED_LISTS.items():
        if argument in metafunc.fixturenames:
            session = metafunc.config.harness_session
            metafunc.parametrize(argument, configured_values(session.claims_config, claim, key), ids=str)


def named_pairs(markexpr: str, custom_given: bool) -> set[str]:
    """The real or custom pairs a run asks for: those whose marker the ``-m`` expression names, and the
    custom pair whenever --base/--sft are given. Only these run: an expression such as ``not slow`` must not
    start a download of every real checkpoint."""
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", markexpr or ""))
    return {marker for marker in REAL_MARKERS if marker in names} | ({"custom"} if custom_given else set())


def pytest_collection_modifyitems(config, items):
    custom_given = bool(config.option.base and config.option.sft)
    wanted = named_pairs(config.option.markexpr, custom_given)
    selected, deselected = [], []
    for item in items:
        pair = next((m for m in (*REAL_MARKERS, *models.TINY_PAIRS, "controls") if item.get_closest_marker(m)), None)
        if pair in REAL_MARKERS:
            keep = pair in wanted
        else:  # with --base/--sft and no -m, the user's pair replaces the tiny pairs and the controls
            keep = pair is None or bool(config.option.markexpr) or not custom_given
        (selected if keep else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
        if not wanted:
            config.harness_session.deselected_note = (
                f"{len(deselected)} tests on real checkpoints were deselected: select a pair with "
                f"-m {' / -m '.join(models.REAL_PAIRS)}, or --base BASE --sft SFT"
            )


def pair_of(item: pytest.Item) -> str | None:
    """The pair (or control) a test runs on, from its session fixture's parameter."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    names = {*models.REGISTRY, *CONTROLS, "custom"}
    return next((value for value in callspec.params.values() if isinstance(value, str) and value in names), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and isinstance(call.excinfo.value, BadInputError):
        # an expected refusal of the pair's input (NaN under a swap, too few layers): one line, no traceback
        report.longrepr = f"{pair_of(item) or item.name} is refused: {call.excinfo.value}"
    if report.failed:
        pair = pair_of(item)
        if pair is not None:
            failed = item.config.harness_session.failed
            failed[pair] = failed.get(pair, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    harness = session.config.harness_session
    harness.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    harness.written = harness.finish()


def pytest_terminal_summary(terminalreporter, config):
    harness = config.harness_session
    if harness.deselected_note:
        terminalreporter.write_line(harness.deselected_note)
    for name in sorted(set(harness.measured) | set(harness.swaps) | set(harness.studies)):
        terminalreporter.write_sep("-", f"claims on {name}")
        verdicts = {
            **(harness.measured[name].verdicts if name in harness.measured else {}),
            **(harness.swaps[name].verdicts if name in harness.swaps else {}),
            **(harness.studies[name].verdicts if name in harness.studies else {}),
        }
        terminalreporter.write_line(verification.verdict_table(verdicts))
    for path in getattr(harness, "written", []):
        terminalreporter.write_line(f"wrote {path}")
    for note in harness.baseline_notes:
        terminalreporter.write_line(note, red=True)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_session(request) -> ClaimSession:
    return request.config.harness_session


@pytest.fixture(scope="session", params=PAIR_PARAMS)
def measured_pair(request, harness_session) -> verification.Measured:
    """A base/SFT pair, profiled once per session (from the cache when it was profiled before)."""
    return harness_session.measure(request.param)


@pytest.fixture(scope="session", params=CONTROL_PARAMS)
def planted_pair(request, harness_session) -> verification.Measured:
    """A planted control pair whose verdicts are known in advance."""
    return harness_session.measure(request.param)


@pytest.fixture(scope="session", params=EMERGENCE_CONTROL_PARAMS)
def planted_emergence_pair(request, harness_session) -> verification.Measured:
    """A planted pair whose logit-lens emergence (C5) is known: a trained reader placed at a known depth."""
    return harness_session.measure(request.param)


@pytest.fixture(scope="session", params=STAGES_CONTROL_PARAMS)
def planted_stages_pair(request, harness_session) -> verification.Measured:
    """A planted pair built by hand in C6's three stages, or with one stage missing."""
    return harness_session.measure(request.param)


@pytest.fixture(scope="session", params=LADDER_PARAMS)
def dose_ladder(request, harness_session) -> str:
    """A ladder of planted controls whose late effect grows from none to well past each threshold."""
    return request.param


@pytest.fixture
def check_dose_response(harness_session):
    """Every rung of a ladder must get its planted answer, and a larger dose never a weaker verdict."""

    def check(claim: str, ladder: str) -> None:
        if claim not in LADDERS[ladder].answers:
            pytest.skip(f"the ladder {ladder} is built for {', '.join(LADDERS[ladder].answers)}, not {claim}")
        rungs = [
            (dose, measured.verdict(claim), CONTROLS[measured.name].expected.get(claim))
            for dose, measured in harness_session.ladder(ladder)
        ]
        rows = dose_response.response(claim, rungs)
        harness_session.dose_responses.setdefault(ladder, {})[claim] = rows
        problems = dose_response.wrong_answers(rows) + dose_response.reversals(rows)
        assert not problems, (
            f"{claim} on the planted ladder {ladder}:\n" + "\n".join(problems) + "\n" + dose_response.table(rows)
        )

    return check


@pytest.fixture(scope="session", params=PAIR_PARAMS)
def swapped_pair(request, harness_session) -> verification.SwapMeasured:
    """A base/SFT pair's layer-swap scores, computed once per session."""
    return harness_session.measure_swaps(request.param)


@pytest.fixture(scope="session", params=SWAP_CONTROL_PARAMS)
def planted_swap_pair(request, harness_session) -> verification.SwapMeasured:
    """A planted pair whose layer-swap verdicts are known in advance."""
    return harness_session.measure_swaps(request.param)


@pytest.fixture(scope="session", params=PAIR_PARAMS)
def tuned_pair(request, harness_session) -> lora_study.LoraStudy:
    """A pair's LoRA study (every budget-matched arm trained and scored with every seed), once per session."""
    return harness_session.study(request.param)


@pytest.fixture(scope="session", params=LORA_CONTROL_PARAMS)
def planted_tuned_pair(request, harness_session) -> lora_study.LoraStudy:
    """A planted pair's LoRA study, trained and scored as a real pair's, whose verdicts are known in advance."""
    return harness_session.study(request.param)


@pytest.fixture
def check_claim(harness_session):
    """Evaluate a claim on a pair and assert what the mode asks for.

    Controls: the verdict must be the planted answer. Models, verification mode:
    the paper's claim must hold. Models, regression mode (--baseline): the
    verdict must match the stored baseline within tolerance.
    """

    def check(claim: str, measured, direction: str | None = None, segments: int | None = None) -> None:
        key = f"{claim}:{direction}" if direction is not None else claim
        control = CONTROLS.get(measured.name)
        if control is not None and control.expected.get(key) is None:  # skipped before anything is computed
            why = control.unanswered.get(key)
            pytest.skip(f"{measured.name} has no planted answer for {claim}" + (f": {why}" if why else ""))
        if direction is not None:
            counts = measured.thresholds["C3"]["segment_counts"]
            if segments not in counts:
                pytest.skip(
                    f"{measured.name} is configured for C3 at M = {counts}, not {segments} "
                    f"(ask for it with --set 'C3.segment_counts=[...]')"
                )
            verdict = measured.verdict(direction, segments)
        elif isinstance(measured, lora_study.LoraStudy):
            reason = measured.unavailable(claim)
            if reason:
                pytest.skip(reason)
            verdict = measured.verdict(claim)
        else:
            verdict = measured.verdict(claim)
        if control is not None:
            expected = control.expected[key]
            wanted = claims.HOLDS if expected else claims.REFUTED
            assert verdict.outcome == wanted, (
                f"planted control {measured.name}: {claim} should be {wanted}. " + verdict.explain()
            )
            isolated = control.isolates.get(key)
            if isolated is not None:  # the control tests that one sub-condition alone can refute the claim
                failing = [condition.name for condition in verdict.deciding if condition.outcome != claims.HOLDS]
                assert failing == list(isolated), (
                    f"planted control {measured.name} must fail {claim} on "
                    f"{', '.join(isolated)} alone; failing: {failing}. " + verdict.explain()
                )
        elif harness_session.update_baselines:
            return  # the measured verdict becomes the baseline at the end of the session
        elif harness_session.regression:
            baseline = harness_session.baseline(measured.name)
            stored = f"{claim}:{direction}:M{segments}" if direction else claim
            current = {"verdicts": {stored: verdict.to_dict()}, "probe": baseline.get("probe")}
            if stored not in baseline.get("verdicts", {}):
                pytest.fail(f"the baseline of {measured.name} has no verdict {stored}: run with --update-baselines")
            differences = regression.compare_sections(baseline, current, harness_session.claims_config, tables=False)
            profiled = getattr(measured, "profile", None)
            source = regression.other_source(baseline, profiled.meta["pair"]) if profiled is not None else None
            assert not differences, (
                f"{claim} on {measured.name} drifted from its baseline"
                + (f" ({source})" if source else "")
                + ":\n"
                + regression.format_differences(differences)
                + "\nnow: "
                + verdict.explain()
            )
        elif verdict.outcome == claims.INCONCLUSIVE:
            message = (
                f"the paper's claim is inconclusive on {measured.name}: an interval straddles its threshold "
                f"(--inconclusive {harness_session.inconclusive}). " + verdict.explain()
            )
            if harness_session.inconclusive == "xfail":
                pytest.xfail(message)
            elif harness_session.inconclusive == "fail":
                pytest.fail(message)
        else:
            assert verdict.holds, f"the paper's claim is refuted on {measured.name}. " + verdict.explain()

    return check
