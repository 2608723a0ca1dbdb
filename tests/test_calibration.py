"""Calibration of every claim's verdict, measured through the same engines as real data (``harness.calibration``).

On data with no effect (per-layer series without a depth trend, arms exchangeable across positions) and with
the effect exactly at a threshold, a claim may hold in at most 5% of the simulations, at the configured
confidence and number of resamples. At the paper's effect sizes its power is reported, and required to be
high where the paper's design gives it room (C4 with GSM8K's 1,319 items, C1's CKA conditions). The per-layer
null and boundary scenarios run twice: with more samples than dimensions and with fewer (N = 40, D = 66).

``HYPOTHESIS_PROFILE=nightly`` runs more simulations at larger sizes on every core: every design at 16, 32 and 64
layers, the per-layer ones also at a real model's N/D = 0.2 (N = 100, D = 500), and C1's at the paper's N = 1,000
with D = 1,024.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from harness import calibration, config, depth, metrics, verification
from harness.verdicts import bootstrap, claims, registry

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
SIMULATIONS = 1000 if NIGHTLY else 500
POWER_SIMULATIONS = 200 if NIGHTLY else 40
# At each condition's boundary: 500 simulations per design at night; by day fewer for the newer designs where a
# simulation is dear (a LoRA study's three bootstrap schemes), with the bound widened by its Monte-Carlo error.
# The designs this module ran at 500 before (the swaps' and C4:M5's hardest null) keep their 500.
# The designs that solve for expected values at N (C6's, C7's spectral condition, the dataset-level directions) run
# 100 by day.
EXPECTED_VALUE_DESIGNS = (
    *calibration.STAGE_CONDITIONS,
    "r_weight_change_spectral",
    *(f"directional_{metric}" for metric in calibration.DATASET_METRICS),
)
BOUNDARY_SIMULATIONS = (
    {"layers": 500, "swap": 500, "lora": 500}
    if NIGHTLY
    else {
        "layers": 200,
        "swap": 500,
        "lora": 100,
        "hardest_u": 500,
        **{f"boundary:{design}": 100 for design in EXPECTED_VALUE_DESIGNS},
    }
)
SIZES = calibration.NIGHTLY if NIGHTLY else calibration.SMALL
DEPTHS = (16, 32, 64) if NIGHTLY else ()  # the boundary designs at real depths at night; 10 layers by day
# N/D of the null with fewer samples than dimensions: also a real model's 0.2 at night (N = 100, D = 500)
RATIOS = (calibration.WIDE_RATIO, calibration.REAL_RATIO) if NIGHTLY else (calibration.WIDE_RATIO,)
# C1's designs also at the paper's 1,000 probe samples with D = 1,024, at night (4 s a simulation at 16 layers)
REAL_DEPTHS = calibration.REAL_DEPTHS
# Power at §4.1's sizes (1,000 pooled and 100 token-level samples, GSM8K's 1,319 items); 10 layers instead of 16
# keep the default run short.
POWER_SIZES = calibration.PAPER if NIGHTLY else calibration.PAPER.scaled(layers=10)
WORKERS = (os.cpu_count() or 1) if NIGHTLY else None  # None: at most two processes
T = config.thresholds_for("calibration")


@pytest.fixture(scope="module")
def measured(show) -> calibration.Tables:
    """The null, boundary, power and per-condition power tables, simulated once for the whole module."""
    measured = calibration.tables(
        SIMULATIONS,
        POWER_SIMULATIONS,
        seed=0,
        sizes=SIZES,
        paper_sizes=POWER_SIZES,
        workers=WORKERS,
        boundary_simulations=BOUNDARY_SIMULATIONS,
        depths=DEPTHS,
        ratios=RATIOS,
    )
    show(f"\nholds on data with no effect:\n{calibration.format_table(measured.null)}")
    show(f"\nholds with one condition at its threshold:\n{calibration.format_table(measured.boundary)}")
    show(f"\npower at the paper's effect sizes:\n{calibration.format_table(measured.power)}")
    show(f"\neach condition at the paper's effect sizes:\n{calibration.format_table(measured.conditions)}")
    return measured


def test_the_calibration_runs_at_the_configured_confidence_and_resamples():
    defaults = config.load_config()["defaults"]["bootstrap"]
    assert T["bootstrap"]["resamples"] == defaults["resamples"] == 200
    assert T["bootstrap"]["confidence"] == defaults["confidence"] == 0.95


@pytest.mark.parametrize("claim", calibration.CLAIM_KEYS)
def test_a_claim_holds_in_at_most_5_percent_of_simulations_without_an_effect(measured, claim):
    null = measured.null
    rows = null.loc[claim]
    assert "null" in rows.index
    for scenario, row in rows.iterrows():
        assert row["simulations"] >= SIMULATIONS >= 500
        assert row["holds"] <= calibration.NULL_LIMIT, (
            f"{claim} held in {row['holds']:.1%} of {row['simulations']} simulations ({scenario}, {row['sizes']}); "
            f"its focus conditions {row['focus'] or '-'} held in {row['focus_holds']:.1%}"
        )


def _boundary_rows():
    return [
        pytest.param(batch, claim, id=f"{claim}-{batch.label or batch.scenario}")
        for batch in calibration.boundary_batches(SIZES, DEPTHS)
        for claim in batch.claims
    ]


@pytest.mark.parametrize(("batch", "claim"), _boundary_rows())
def test_a_claim_with_one_condition_at_its_threshold_holds_at_most_2_5_percent(measured, batch, claim):
    """Every simulated boundary design of the registry: the condition exactly at its threshold, the claim's other
    conditions comfortably met (the best-of-k picks at their hardest null)."""
    boundary = measured.boundary
    row = boundary.loc[(claim, batch.label or batch.scenario)]
    limit = calibration.boundary_limit(int(row["simulations"]))
    assert row["simulations"] == BOUNDARY_SIMULATIONS.get(batch.scenario, BOUNDARY_SIMULATIONS[batch.family])
    assert row["focus"], f"{claim} under {batch.scenario} has no condition at its threshold"
    assert row["holds"] <= limit, (
        f"{claim} held in {row['holds']:.1%} of {row['simulations']} simulations with {row['focus']} at its "
        f"threshold ({batch.scenario}, {row['sizes']}); at most {limit:.1%} is acceptable"
    )


@functools.cache
def _measured_at(kind: str, layers: int) -> pd.DataFrame:
    """The boundary table of the ``kind`` designs (``real_size_batches`` or ``real_ratio_batches``) at ``layers``
    layers, simulated once per depth, so that ``-k "real_depths and L64"`` simulates only that depth (the nightly
    workflow's jobs)."""
    batches = {"size": calibration.real_size_batches, "ratio": calibration.real_ratio_batches}[kind](depths=(layers,))
    return calibration.boundary_table(batches, BOUNDARY_SIMULATIONS["layers"], workers=WORKERS)


def _check_boundary(show, table: pd.DataFrame, batch: calibration.Batch) -> None:
    for claim in batch.claims:
        row = table.loc[(claim, batch.label)]
        limit = calibration.boundary_limit(int(row["simulations"]))
        show(f"\n{claim} at its boundary, {batch.label}: holds {row['holds']:.1%} of {row['simulations']}")
        assert row["simulations"] == BOUNDARY_SIMULATIONS["layers"] >= 500
        assert row["holds"] <= limit, (
            f"{claim} held in {row['holds']:.1%} of {row['simulations']} simulations with {row['focus']} at its "
            f"threshold ({batch.label}); at most {limit:.1%} is acceptable"
        )


def _nightly_rows(batches: list[calibration.Batch], why: str) -> list:
    """One test per design and depth at night; by day one skipped row that says why."""
    if not NIGHTLY:
        return [pytest.param(None, id="by-day", marks=pytest.mark.skip(reason=f"{why}: make nightly-calibration"))]
    return [pytest.param(b, id=f"{b.scenario}-L{b.sizes.layers}") for b in batches]


@pytest.mark.parametrize(
    "batch",
    _nightly_rows(
        calibration.real_size_batches(depths=REAL_DEPTHS),
        "C1 at N = 1,000, D = 1,024 and 16 to 64 layers takes 20 core-hours (4-16 s a simulation)",
    ),
)
def test_at_the_papers_sample_count_and_real_depths_c1_with_one_condition_at_its_threshold_holds_at_most_2_5_percent(
    show, batch
):
    """C1 reads only the pair series, so its designs also run with §4.1's 1,000 probe samples, more dimensions
    than samples, and a real model's 16, 32 and 64 layers."""
    _check_boundary(show, _measured_at("size", batch.sizes.layers), batch)


@pytest.mark.parametrize(
    "batch",
    _nightly_rows(
        calibration.real_ratio_batches(depths=REAL_DEPTHS),
        "the per-layer designs at N = 100, D = 500 and 16 to 64 layers take hours of CPU (1-4 s a simulation)",
    ),
)
def test_at_a_real_ratio_of_samples_to_dimensions_a_claim_with_one_condition_at_its_threshold_holds_at_most_2_5_percent(
    show, batch
):
    """Every per-layer design whose statistics see the hidden size, the spectral claims' among them, with N/D = 0.2
    (§4.1's 1,000 samples against a 13B model's 5,120 dimensions) at 16, 32 and 64 layers."""
    _check_boundary(show, _measured_at("ratio", batch.sizes.layers), batch)


def test_c1s_boundary_designs_are_also_simulated_at_the_papers_sample_count_with_more_dimensions():
    """C1's designs (the claim reads only the pair series) run with §4.1's 1,000 probe samples and D = 1,024 at 16,
    32 and 64 layers; the designs of claims that read spectral series cannot afford it."""
    batches = calibration.real_size_batches(depths=REAL_DEPTHS)
    c1 = [design for design, entries in registry.simulated_designs().items() if set(entries) == {"C1"}]
    assert len(c1) == 5
    assert sorted(f"{batch.family}:{batch.scenario}" for batch in batches) == sorted(c1 * len(REAL_DEPTHS))
    assert {batch.sizes.layers for batch in batches} == {16, 32, 64}
    for batch in batches:
        assert batch.claims == ("C1",)
        assert batch.sizes.samples == 1000 <= batch.sizes.width


def test_at_night_every_per_layer_design_also_runs_at_a_real_models_ratio_of_samples_to_dimensions():
    """N/D = 0.2 (§4.1's 1,000 samples against a 13B model's 5,120 dimensions) for the null and every per-layer
    design whose statistics see the hidden size, at 16, 32 and 64 layers."""
    designs = {
        design.partition(":")[2]
        for design in registry.simulated_designs()
        if design.startswith("layers:") and design.partition(":")[2] not in calibration.TOKEN_LEVEL_DESIGNS
    }
    batches = calibration.real_ratio_batches(depths=REAL_DEPTHS)
    assert {b.scenario for b in batches} == designs - {"null"}
    assert {(b.scenario, b.sizes.layers) for b in batches} == {(d, n) for d in designs - {"null"} for n in REAL_DEPTHS}
    nulls = calibration.null_batches(calibration.NIGHTLY, (calibration.WIDE_RATIO, calibration.REAL_RATIO))
    for sizes in [b.sizes for b in batches] + [b.sizes for b in nulls if b.label == "null, N = 0.2 D"]:
        assert sizes.samples >= 100 and sizes.width >= 5 * sizes.samples


@pytest.mark.parametrize("claim", [claim for claim, kind in bootstrap.NEEDS.items() if kind == "pair"])
def test_a_claim_of_the_pair_series_gets_the_same_verdict_without_the_spectral_metrics(claim):
    """The simulations of claims that read only the pair series leave out the spectral metrics (an SVD per layer
    and model, half of a simulation at N = 1,000): simulated with them, every condition's value and interval is
    the same."""
    thresholds = config.thresholds_for("calibration")
    batches = [b for b in calibration.boundary_batches() if b.family == "layers" and claim in b.claims]
    assert batches
    for batch in batches[:4]:
        plan = calibration.layer_plan(batch.scenario, batch.sizes, thresholds)
        for index in range(2):
            alone, beside = (
                calibration.layer_verdicts(
                    batch.scenario, batch.sizes, thresholds, np.random.default_rng(index), keys, plan
                )
                for keys in ((claim,), (claim, "C6"))  # C6 reads the spectral series, so that pair has them
            )
            assert all(np.isfinite(c.value) for c in beside["C6"].deciding)
            assert repr(alone[claim].conditions) == repr(beside[claim].conditions), (batch.label, index)


def test_power_at_the_papers_effect_sizes_is_reported(measured):
    power = measured.power
    assert set(power.index.get_level_values("claim")) == set(calibration.POWER_KEYS)
    assert (power["simulations"] == POWER_SIMULATIONS).all()
    shares = power[list(claims.OUTCOMES)].sum(axis=1)
    assert np.allclose(shares, 1.0)
    # §4.4, Fig. 7: 0.375 against 0.28 on 1,319 items is a gap of ~7 standard errors; with a quiet seed-to-seed
    # spread, three seeds must find it nearly always.
    c4 = power.loc[("C4", f"paper, seed sd {calibration.POWER_SEED_SDS[0]:g}")]
    assert c4["holds"] >= 0.8, f"C4 held in only {c4['holds']:.0%} at the paper's effect size ({c4['sizes']})"
    # §4.2, Fig. 1: a plateau at 0.99 and a drop to 0.94 (0.015 above the 0.035 threshold)
    c1 = power.loc[("C1", "paper")]
    assert c1["focus_holds"] >= 0.8, f"C1's CKA conditions held in only {c1['focus_holds']:.0%} ({c1['sizes']})"


@pytest.mark.skipif(NIGHTLY, reason="the declared power is measured at the default run's sizes (10 layers)")
def test_each_conditions_declared_power_is_what_the_calibration_measures(measured):
    """The power in each provenance line (``registry.ConditionSpec.power``, 200 simulations) agrees with this
    run's measurement within their joint Monte-Carlo error."""
    for (claim, scenario, name), row in measured.conditions.iterrows():
        spec = registry.condition(claim, name)
        declared = dict(spec.power).get(scenario)
        assert declared is not None, f"{claim}.{name} declares no power for {scenario!r}"
        pooled = min(max((declared + row["holds"]) / 2, 0.05), 0.95)
        error = 3 * math.sqrt(pooled * (1 - pooled) * (1 / row["simulations"] + 1 / registry.POWER_SIMULATIONS))
        assert abs(row["holds"] - declared) <= error, (
            f"{claim}.{name} ({scenario}): declared power {declared:.0%}, measured {row['holds']:.0%} "
            f"in {row['simulations']} simulations"
        )


def _powered_rows():
    return [
        pytest.param(claim, spec, powered, id=f"{claim}.{spec.name}-" + ",".join(f"{k}={v}" for k, v in powered[1]))
        for claim, entry in registry.CLAIMS.items()
        for spec in entry.conditions
        for powered in spec.powered_at
    ]


@pytest.mark.parametrize(("claim", "spec", "powered"), _powered_rows())
def test_the_sizes_a_provenance_line_names_give_a_condition_80_percent_power(claim, spec, powered):
    """Where the paper's sizes leave a condition under 80% power at the paper's effect, its provenance line names
    the size that reaches it (``registry.ConditionSpec.powered_at``): measured again here, 200 simulations."""
    scenario, sizes, declared = powered
    key = calibration.calibration_key(claim)
    family = calibration.family_of(key)
    if family == "lora" and not NIGHTLY:
        pytest.skip("a simulated LoRA study per simulation (minutes at these seeds): measured at night")
    batch = next(
        b for b in calibration.power_batches(POWER_SIZES) if (b.family, b.label or b.scenario) == (family, scenario)
    )
    batch = dataclasses.replace(batch, sizes=batch.sizes.scaled(**dict(sizes)), keys=(key,))
    results = calibration.run_batches([batch], registry.POWER_SIMULATIONS, workers=WORKERS)
    table = calibration.condition_table([batch], results).loc[(key, scenario)]
    rows = table[[spec.matches(name) for name in table.index]]
    assert not rows.empty, f"no simulated condition of {claim} matches {spec.name}"
    error = 3 * math.sqrt(declared * (1 - declared) * 2 / registry.POWER_SIMULATIONS)
    for name, row in rows.iterrows():
        assert row["holds"] >= 0.8, f"{claim}.{name} held in {row['holds']:.1%} with {dict(sizes)} ({scenario})"
        assert abs(row["holds"] - declared) <= error, (claim, name, row["holds"], declared)


def test_no_claim_is_refuted_at_the_papers_effect_sizes(measured):
    power = measured.power
    limit = calibration.boundary_limit(POWER_SIMULATIONS)
    refuted = power[power["refuted"] > limit]
    assert refuted.empty, f"refuted at the paper's effect more often than {limit:.1%}:\n{refuted}"


# --- the engines' inputs are what the simulations say they are ---------------------------------------


def test_the_simulated_sft_perturbation_sets_the_population_cka():
    rng = np.random.default_rng(0)
    spectrum = 0.8 ** np.arange(8)
    x = rng.standard_normal((20000, 8)) * np.sqrt(spectrum)
    for target in (0.99, 0.94):
        y = x + calibration.sft_noise_scale(target) * rng.standard_normal(x.shape) * np.sqrt(spectrum)
        assert metrics.linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(target, abs=2e-3)


def test_a_simulated_pair_goes_through_the_profile_tables_and_the_resampler():
    sizes = calibration.SMALL
    pair = calibration.simulated_pair(calibration.layer_plan("null", sizes), sizes, np.random.default_rng(1))
    assert list(pair.pair.index) == list(range(sizes.layers + 1))
    assert math.isnan(pair.pair.loc[0, "weight_change"]) and (pair.pair["weight_change"].iloc[1:] > 0).all()
    assert pair.pair["cka"].between(0.9, 1.0).all()
    resampler = bootstrap.Resampler(pair, 5, 0)
    verdict = verification.Measured(
        "simulated", pair, {**T, "bootstrap": {**T["bootstrap"], "resamples": 5}}, resampler
    ).verdict("C1")
    assert verdict.claim == "C1" and f"over 5 groups of the {sizes.samples} probe samples" in verdict.ci_note


def test_simulations_do_not_depend_on_how_they_are_split_over_workers():
    batch = calibration.Batch("swap", "null", calibration.SMALL)
    serial = calibration.run_batches([batch], 30, seed=3, workers=1)
    split = calibration.run_batches([batch], 30, seed=3, workers=2)
    assert serial == split


def test_the_directional_null_changes_no_population_metric():
    """The directional null: per-sample metrics identically distributed, and the SFT's states with the base's
    centroid and second moment, so the expected SFT − base difference of every §3.3-3.4 metric is zero."""
    sizes = calibration.SMALL.scaled(samples=4000, token_samples=4000)
    pair = calibration.simulated_pair(
        calibration.layer_plan("directional_null", sizes), sizes, np.random.default_rng(2)
    )
    for metric in ("prompt_entropy", "curvature", "token_sparsity"):
        difference = pair.sft_run.sample_metric(metric) - pair.base_run.sample_metric(metric)
        level, sd = calibration.SAMPLE_METRIC_LEVELS[metric]
        assert abs(difference.mean()) < 0.05 * sd, metric
    for row in (1, sizes.layers):
        base, sft = (run.pooled(row).double().numpy() for run in (pair.base_run, pair.sft_run))
        # the SFT perturbation would add 1.5% to the spread (CKA 0.985) were it not rescaled
        assert np.trace(np.cov(sft.T)) / np.trace(np.cov(base.T)) == pytest.approx(1.0, abs=0.004)
        assert np.abs(sft.mean(axis=0) - base.mean(axis=0)).max() < 0.01


def test_a_simulated_lora_study_gives_every_verdict():
    study = calibration.simulated_study(
        calibration.lora_plan("paper", seed_sd=0.01), calibration.SMALL, T, np.random.default_rng(0)
    )
    verdicts = study.all_verdicts()
    assert sorted(verdicts) == ["C4", "C4-control", "C4:M5", "C8"] and not study.skipped
    assert study.scores()["01000"] > study.scores()["11111"]


def test_the_simulation_pool_follows_harness_workers(monkeypatch):
    """A lane that shares the machine asks for one process; otherwise up to two, on the cores it may use."""
    monkeypatch.setenv("HARNESS_WORKERS", "1")
    assert calibration.default_workers() == 1
    monkeypatch.setenv("HARNESS_WORKERS", "3")
    assert calibration.default_workers() == 3
    monkeypatch.delenv("HARNESS_WORKERS")
    assert 1 <= calibration.default_workers() <= min(2, len(os.sched_getaffinity(0)))


def test_the_cosine_designs_put_the_population_cosine_at_the_threshold():
    """C1's cosine designs solve for each row's population mean cosine (``population_cosine``); a large
    simulated pair, through the profile's own cosine, reads the same values."""
    sizes = calibration.SMALL
    head, tail = claims.tail_split(list(range(sizes.layers + 1)), sizes.layers)
    drop = calibration.boundary_plan("cosine_drop", sizes, T)
    population = [calibration.population_cosine(drop, row) for row in range(sizes.layers + 1)]
    assert np.mean([population[row] for row in head]) - population[-1] == pytest.approx(
        T["C1"]["cosine_drop_min"], abs=1e-6
    )
    tie = calibration.boundary_plan("cosine_tail_below_plateau", sizes, T)
    tied = [calibration.population_cosine(tie, row) for row in range(sizes.layers + 1)]
    assert min(tied[row] for row in head) == pytest.approx(min(tied[row] for row in tail), abs=1e-6)
    large = sizes.scaled(samples=20000, token_samples=20)
    pair = calibration.simulated_pair(drop, large, np.random.default_rng(3))
    assert pair.pair["cosine"].to_numpy() == pytest.approx(np.array(population), abs=3e-3)


def test_the_correlation_design_plants_exactly_the_asked_correlation():
    """C7's design: the population cosines, solved row by row, correlate with the exact weight change at r."""
    from scipy import stats

    sizes = calibration.SMALL
    for r in (T["C7"]["cosine_r_max"], calibration.C7_PAPER_R):
        plan = calibration.correlation_plan(sizes, r)
        cosines = [calibration.population_cosine(plan, row) for row in range(1, sizes.layers + 1)]
        assert stats.pearsonr(plan.weight, cosines).statistic == pytest.approx(r, abs=1e-6)
        assert plan.weight_spread == 0.0  # the weight change is exact: the estimand is this very correlation


def test_the_expected_value_designs_put_their_statistic_at_the_threshold():
    """The designs that solve for expected values at N (C6's, C7's spectral condition, the dataset-level
    directions) put their statistic at its threshold: probes drawn afresh (other draws, more of them) read the
    same values within their Monte-Carlo error."""
    from scipy import stats

    designs = {}  # each design's sizes with more samples than dimensions: the plans the tables above solved
    for batch in calibration.boundary_batches(SIZES):
        designs.setdefault(batch.scenario, batch.sizes)
    rows = SIZES.layers + 1
    head, _ = claims.tail_split(list(range(rows)), SIZES.layers)
    plateau = [row for row in head if row >= 1]

    plan_sizes = {}

    def design(name):
        at = designs[f"boundary:{name}"]
        plan = calibration.boundary_plan(name, at, T)
        plan_sizes[id(plan)] = at
        return plan

    def fresh(plan, row, model="base", probes=500):
        return calibration.expected_spectra(plan, row, plan_sizes[id(plan)].samples, model, probes, seed=7)

    def plateau_values(plan, metric):
        return np.array([fresh(plan, row)[metric] for row in plateau])

    c6 = T["C6"]
    collapse = design("rank_collapse_ratio")
    ratio = fresh(collapse, rows - 1)["effective_rank"] / np.median(plateau_values(collapse, "effective_rank"))
    assert ratio == pytest.approx(c6["collapse_ratio_max"], rel=0.02)
    explode = design("norm_explode_ratio")
    ratio = fresh(explode, rows - 1)["spectral_norm"] / np.median(plateau_values(explode, "spectral_norm"))
    assert ratio == pytest.approx(c6["explode_ratio_min"], rel=0.02)
    transition = design("transition_ratio")
    ranks = plateau_values(transition, "effective_rank")
    jump = ranks[0] - fresh(transition, 0)["effective_rank"]
    assert jump / np.median(np.abs(np.diff(ranks))) == pytest.approx(c6["transition_ratio_min"], rel=0.05)
    tracked = design("min_track_pearson")
    curves = {model: [fresh(tracked, row, model) for row in range(rows)] for model in ("base", "sft")}
    smallest = min(
        stats.pearsonr([b[key] for b in curves["base"]], [s[key] for s in curves["sft"]]).statistic
        for key in calibration.C6_TRACKED.values()
    )
    assert smallest == pytest.approx(c6["track_pearson_min"], abs=0.005)

    spectral = design("r_weight_change_spectral")
    change = [
        fresh(spectral, row, "sft", 2000)["spectral_norm"] - fresh(spectral, row, "base", 2000)["spectral_norm"]
        for row in range(1, rows)
    ]
    assert stats.pearsonr(spectral.weight, change).statistic == pytest.approx(T["C7"]["spectral_r_min"], abs=0.01)

    middle = [depth.row_of_layer(layer) for layer in depth.layer_groups(SIZES.layers)["middle"]]
    for metric in calibration.DATASET_METRICS:
        plan = design(f"directional_{metric}")
        base, sft = fresh(plan, middle[0], "base", 2000)[metric], fresh(plan, middle[0], "sft", 2000)[metric]
        smallest = T["directional"]["margin"] + T["directional"]["relative_margin"][metric] * base
        assert sft - base == pytest.approx(-smallest, rel=0.1), metric
