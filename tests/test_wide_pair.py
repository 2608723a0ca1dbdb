"""Verdicts on a pair wider than its probe set, through the real capture and engine: a random OLMo-2 of hidden
size 256 with an SFT perturbed by a depth-profiled change (``dry_run.build_shape_pair``), profiled on 48 and on
144 pooled samples, both fewer than its 256 dimensions, as every real model's probe set is.

Every interval contains its estimate, and the statistics whose estimand does not depend on the probe's size
(CKA, cosine, mean shift and what C1 and C7 build from them, docs/statistics.md) agree between the two sample
counts within their intervals. The spectral metrics estimate their value on a probe of N samples, which at
N < D depends on N: they are not compared across N.
"""

from __future__ import annotations

import math

import pytest

from harness import dry_run, verification
from harness.measure.profile import ProfileOptions
from harness.sources import models
from harness.verdicts import directional, intervals

WIDTH = 256
SAMPLE_COUNTS = (48, 144)
CLAIMS = ("C1", "C5", "C6", "C7", *directional.HYPOTHESES)
N_FREE_CONDITIONS = {
    "C1": ("cka_plateau_min", "cka_drop", "cosine_drop", "mean_shift_spike_ratio"),
    "C7": ("r_weight_change_cosine",),
}
N_FREE_SERIES = ("cka", "cosine", "mean_shift")
SHAPE = {
    "hidden_size": WIDTH,
    "intermediate_size": 512,
    "max_position_embeddings": 256,
    "model_type": "olmo2",
    "num_attention_heads": 4,
    "num_hidden_layers": 6,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
    "vocab_size": 1100,
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[int, verification.Measured]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
        base, sft = dry_run.build_shape_pair("wide_olmo2", SHAPE, "float32", progress=False)
        spec = models.custom_pair(str(base), str(sft), dtype="float32")
        out = {}
        for count in SAMPLE_COUNTS:
            options = ProfileOptions(pooled_samples=count, token_samples=24, max_tokens=64)
            pair = verification.measure(spec, options, device="cpu", progress=False)
            for claim in CLAIMS:
                pair.verdict(claim)
            out[count] = pair
    return out


def test_the_probe_sets_are_narrower_than_the_model(measured):
    for count, pair in measured.items():
        assert pair.profile.base_run.n_samples == count < WIDTH


@pytest.mark.parametrize("count", SAMPLE_COUNTS)
@pytest.mark.parametrize("claim", CLAIMS)
def test_every_interval_contains_its_estimate(measured, claim, count):
    verdict = measured[count].verdict(claim)
    assert verdict.estimator, "every verdict records its estimator"
    for condition in verdict.conditions:
        if condition.interval is None or not all(map(math.isfinite, condition.interval)):
            continue
        low, high = condition.interval
        assert low <= condition.value <= high, f"{claim} at N = {count}: {condition.describe()}"


@pytest.mark.parametrize("claim", N_FREE_CONDITIONS)
def test_statistics_of_a_size_free_estimand_agree_at_two_sample_counts(measured, claim):
    few, many = (measured[count].verdict(claim) for count in SAMPLE_COUNTS)
    for name in N_FREE_CONDITIONS[claim]:
        a, b = (next(c for c in v.conditions if c.name == name) for v in (few, many))
        if a.interval is None or b.interval is None:  # exact on both: the same value
            assert a.value == pytest.approx(b.value, rel=1e-6), name
            continue
        assert a.interval[0] <= b.interval[1] and b.interval[0] <= a.interval[1], (
            f"{claim}: {a.describe()} at N = {SAMPLE_COUNTS[0]} against {b.describe()} at N = {SAMPLE_COUNTS[1]}"
        )


@pytest.mark.parametrize("series", N_FREE_SERIES)
def test_each_layer_s_estimate_agrees_at_two_sample_counts(measured, series):
    bands = {}
    for count, pair in measured.items():
        point = pair.resampler.point_bundle({series: pair.profile.pair[series]})[series].to_numpy()
        replicates = [bundle[series].values for bundle in pair.resampler.bundles("pair")]
        bands[count] = [
            intervals.jackknife_interval(point[j], [r[j] for r in replicates], 0.95) for j in range(len(point))
        ]
    for layer, (a, b) in enumerate(zip(*bands.values(), strict=True)):
        if not all(map(math.isfinite, (*a, *b))):
            continue
        assert a[0] <= b[1] and b[0] <= a[1], f"{series} at layer {layer}: {a} at N = 48, {b} at N = 144"
