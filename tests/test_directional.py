"""The directional hypotheses of §3.3-3.4 on synthetic per-sample data: a planted shift is detected in every
band, an identical pair is refuted, noise alone never verifies a direction, and the bands are the first,
middle and last 20% of decoder layers."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from harness import config, metrics
from harness.verdicts import claims, directional, intervals

T = config.thresholds_for("planted")
L = 10
SAMPLES = 60
RESAMPLES = 20  # jackknife groups
LOWERS = [claim for claim, h in directional.HYPOTHESES.items() if h.comparison == "<" and not h.exact]
RAISES = [claim for claim, h in directional.HYPOTHESES.items() if h.comparison == ">" and not h.exact]


def weights(count=SAMPLES, seed=0):
    return intervals.jackknife_weights(count, RESAMPLES, np.random.default_rng(seed))


def per_sample(seed=0, n_layers=L):
    """(samples, rows) values of a token-level metric: a per-sample level plus per-layer noise."""
    rng = np.random.default_rng(seed)
    return 0.5 + 0.1 * rng.normal(size=(SAMPLES, 1)) + 0.02 * rng.normal(size=(SAMPLES, n_layers + 1))


def judged(claim, base, sft, w=None):
    """A sample-level hypothesis on per-sample base and SFT values (eq. 8), with reweighting intervals."""
    differences = sft - base
    w = weights() if w is None else w
    return directional.evaluate(
        directional.HYPOTHESES[claim],
        directional.paired_means(differences),
        T,
        directional.paired_means(differences, w),
        note="synthetic",
    )


@pytest.mark.parametrize(
    "n_layers, first, middle, last",
    [
        (10, [1, 2], [3, 4, 5, 6, 7, 8], [9, 10]),
        (16, [1, 2, 3], list(range(4, 14)), [14, 15, 16]),
    ],
)
def test_bands_are_the_first_middle_and_last_20_percent_of_decoder_layers(n_layers, first, middle, last):
    rows = directional.band_rows(n_layers)
    assert rows == {"first": first, "middle": middle, "last": last}
    assert 0 not in sum(rows.values(), [])  # the embeddings are no decoder layer


@pytest.mark.parametrize("claim", LOWERS + RAISES)
def test_a_planted_shift_in_the_papers_direction_holds_in_every_band(claim):
    base = per_sample()
    sign = -1.0 if directional.HYPOTHESES[claim].comparison == "<" else 1.0
    sft = base + sign * 0.05 + 0.01 * np.random.default_rng(1).normal(size=base.shape)
    verdict = judged(claim, base, sft)
    assert verdict.outcome == claims.HOLDS, verdict.explain()
    assert [c.name for c in verdict.deciding] == [directional.condition_name(b) for b in directional.BANDS]
    assert all(c.interval is not None and c.value == pytest.approx(sign * 0.05, abs=0.01) for c in verdict.deciding)
    backwards = judged(claim, sft, base)  # the same pair, base and SFT swapped
    assert backwards.outcome == claims.REFUTED, backwards.explain()


@pytest.mark.parametrize("claim", list(directional.HYPOTHESES))
def test_an_identical_pair_is_refuted_exactly(claim):
    base = per_sample()
    verdict = judged(claim, base, base.copy())
    assert verdict.outcome == claims.REFUTED, verdict.explain()
    assert all(c.value == 0.0 and c.interval is None for c in verdict.deciding)  # no variance: exact


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("claim", LOWERS + RAISES)
def test_noise_alone_never_verifies_a_direction(claim, seed):
    base = per_sample(seed)
    sft = base + 0.03 * np.random.default_rng(100 + seed).normal(size=base.shape)
    assert judged(claim, base, sft, weights(seed=seed)).outcome != claims.HOLDS


def test_a_shift_in_one_band_alone_does_not_verify_the_hypothesis():
    base = per_sample()
    shift = np.zeros(L + 1)
    shift[directional.band_rows(L)["last"]] = -0.05
    verdict = judged("D:curvature", base, base + shift + 0.01 * np.random.default_rng(2).normal(size=base.shape))
    by_band = {c.name: c.outcome for c in verdict.deciding}
    assert by_band[directional.condition_name("last")] == claims.HOLDS
    assert verdict.outcome != claims.HOLDS, verdict.explain()


def test_a_band_moving_the_other_way_refutes_the_hypothesis():
    base = per_sample()
    shift = np.full(L + 1, -0.05)
    shift[directional.band_rows(L)["first"]] = 0.05
    assert judged("D:prompt_entropy", base, base + shift).outcome == claims.REFUTED


def test_paired_means_skip_undefined_samples_and_equal_the_unweighted_mean_under_equal_weights():
    differences = per_sample()
    differences[3, 4] = math.nan  # a sample too short for the metric at one layer
    plain = directional.paired_means(differences)
    assert plain == pytest.approx(np.nanmean(differences, axis=0))
    equal = np.full((2, SAMPLES), 1 / SAMPLES)
    assert directional.paired_means(differences, equal)[0] == pytest.approx(plain)
    assert directional.paired_means(differences, weights()).shape == (RESAMPLES, L + 1)


def test_rank_deficiency_is_exact_even_when_resamples_are_offered():
    hypothesis = directional.HYPOTHESES["D:rank_deficiency"]
    delta = np.array([0.0] + [2.0] * L)
    verdict = directional.evaluate(hypothesis, delta, T, np.tile(delta, (RESAMPLES, 1)) + 0.5)
    assert verdict.outcome == claims.HOLDS and all(c.interval is None for c in verdict.conditions)
    assert directional.evaluate(hypothesis, np.zeros(L + 1), T).outcome == claims.REFUTED


def test_the_margin_and_its_provenance_come_from_the_config():
    custom = config.thresholds_for("planted")
    custom["directional"] = {"margin": 0.1}
    base = per_sample()
    delta = directional.paired_means(base - 0.05 - base)
    lowered = directional.evaluate(directional.HYPOTHESES["D:curvature"], delta, custom)
    assert all(c.threshold == -0.1 for c in lowered.conditions) and lowered.outcome == claims.REFUTED
    raised = directional.evaluate(directional.HYPOTHESES["D:sparsity"], -delta, custom)
    assert all(c.threshold == 0.1 for c in raised.conditions)
    assert all(c.source.startswith("paper: §3.3") for c in lowered.conditions)


def _pooled_spectra(z, w):
    spectra = metrics.weighted_spectra(z, torch.from_numpy(w))
    return {"dataset_entropy": spectra["entropy"].numpy(), "effective_rank": spectra["effective_rank"].numpy()}


def test_a_compressed_dataset_matrix_lowers_dataset_entropy_and_effective_rank_in_every_band():
    """Eq. 9 on (N, D) matrices per layer: the SFT's pooled vectors squeezed towards three directions."""
    generator = torch.Generator().manual_seed(0)
    squeeze = torch.tensor([1.0] * 3 + [0.2] * 13, dtype=torch.float64)
    base = [torch.randn(SAMPLES, 16, generator=generator, dtype=torch.float64) for _ in range(L + 1)]
    sft = [z * squeeze for z in base]
    w = weights()
    uniform = np.full((1, SAMPLES), 1 / SAMPLES)
    for claim in ("D:dataset_entropy", "D:effective_rank"):
        metric = directional.HYPOTHESES[claim].metric
        point = np.array(
            [
                _pooled_spectra(s, uniform)[metric][0] - _pooled_spectra(b, uniform)[metric][0]
                for b, s in zip(base, sft, strict=True)
            ]
        )
        resampled = np.stack(
            [_pooled_spectra(s, w)[metric] - _pooled_spectra(b, w)[metric] for b, s in zip(base, sft, strict=True)],
            axis=1,
        )
        verdict = directional.evaluate(directional.HYPOTHESES[claim], point, T, resampled)
        assert verdict.outcome == claims.HOLDS, verdict.explain()
        assert directional.evaluate(directional.HYPOTHESES[claim], -point, T, -resampled).outcome == claims.REFUTED


def test_a_measured_pair_reads_its_captured_runs_and_resamples():
    """The glue: per-sample values from the runs (eq. 8), dataset deltas from the profile and spectral resamples."""
    base_values, sft_values = per_sample(), per_sample() - 0.05
    run = lambda values: SimpleNamespace(  # noqa: E731
        sample_metric=lambda name: values, n_samples=SAMPLES, pooled=lambda layer: torch.zeros(SAMPLES, 8)
    )  # more samples than dimensions: rank deficiency reads its difference as it is
    index = pd.RangeIndex(L + 1)
    delta = pd.Series(np.linspace(-0.3, -0.1, L + 1), index=index)
    profile = SimpleNamespace(
        base_run=run(base_values),
        sft_run=run(sft_values),
        pair=pd.DataFrame({"delta_effective_rank": delta, "delta_rank_deficiency": 0.0}),
        base=pd.DataFrame({"effective_rank": 2.0, "rank_deficiency": 0.0}, index=index),
    )
    rng = np.random.default_rng(0)
    bundles = [{"delta_effective_rank": delta + rng.normal(0, 0.01, L + 1)} for _ in range(RESAMPLES)]
    resampler = SimpleNamespace(token_weights=weights(), note="synthetic", bundles=lambda kind: bundles)
    curvature = directional.measured_verdict("D:curvature", profile, resampler, T)
    assert curvature.outcome == claims.HOLDS, curvature.explain()
    assert curvature.evidence["delta_curvature"] == pytest.approx([-0.05] * (L + 1))
    assert directional.measured_verdict("D:effective_rank", profile, resampler, T).outcome == claims.HOLDS
    assert directional.measured_verdict("D:rank_deficiency", profile, resampler, T).outcome == claims.REFUTED


def test_rank_deficiency_is_undefined_not_unchanged_where_both_models_are_of_full_row_rank_at_n_below_d():
    from harness import calibration

    thresholds = config.thresholds_for("calibration")
    wide = calibration.SMALL.scaled(samples=24, width=48)  # N < D: every pooled matrix has full row rank
    verdict = calibration.directional_verdicts("null", wide, thresholds, np.random.default_rng(0))["D:rank_deficiency"]
    assert verdict.outcome == "inconclusive"
    assert all(value is None for value in verdict.evidence["delta_rank_deficiency"])  # no row says anything
    tall = calibration.directional_verdicts("null", calibration.SMALL, thresholds, np.random.default_rng(0))
    assert tall["D:rank_deficiency"].outcome == "refuted"  # N > D: a deficiency of 0 on both sides is no change


@pytest.mark.parametrize("claim", [claim for claim, h in directional.HYPOTHESES.items() if not h.exact])
def test_a_change_smaller_than_the_smallest_change_of_interest_never_holds(claim):
    """A sign alone verifies no direction: a precisely measured change of half the relative margin (of the base
    model's own level) is refuted, one of twice the margin holds."""
    hypothesis = directional.HYPOTHESES[claim]
    share = T["directional"]["relative_margin"][hypothesis.metric]
    base = np.full(L + 1, 0.8)
    sign = -1.0 if hypothesis.comparison == "<" else 1.0
    noise = np.random.default_rng(1).normal(0, 1e-5, (RESAMPLES, L + 1))
    for factor, expected in ((0.5, claims.REFUTED), (2.0, claims.HOLDS)):
        delta = np.full(L + 1, sign * factor * share * 0.8)
        verdict = directional.evaluate(hypothesis, delta, T, delta + noise, "synthetic", base)
        assert verdict.outcome == expected, verdict.explain()
        assert all(abs(c.threshold) == pytest.approx(share * 0.8) for c in verdict.conditions)
        assert verdict.conditions[0].source.startswith("harness: the paper gives directions, not sizes")
