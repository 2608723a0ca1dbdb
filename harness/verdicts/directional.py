"""The paper's directional hypotheses (§3.3-3.4) as pure predicates, one verdict per hypothesis.

§3.3-3.4 state which way SFT moves each intrinsic metric: it lowers prompt
entropy (eq. 2, Δ < 0) and dataset entropy (eq. 3, Δ < 0), lowers effective rank
(eq. 4) and raises rank deficiency, raises sparsity, and lowers curvature (eq. 5,
ΔC < 0). Each hypothesis is tested in three depth bands, the first 20%, the
middle and the last 20% of decoder layers (``depth.layer_groups``), on the band
mean of the per-layer SFT − base difference:

- sample-level metrics (prompt entropy, curvature, sparsity) by eq. 8, the mean
  over samples of each sample's own difference, so every sample is its own
  control (paired);
- dataset-level metrics (dataset entropy, effective rank, rank deficiency) by
  eq. 9, the difference of the metric of the two dataset matrices.

The paper states each direction for SFT in general, not for one part of the
network, so the reading here is strict: a hypothesis holds only when it holds in
every band (each band is one deciding condition, and a verdict holds only when
all deciding conditions hold); a band where the change clearly goes the other
way refutes it. A difference of exactly zero lowers and raises nothing: it
refutes both "< 0" and "> 0".

Intervals come from one delete-a-group jackknife of the probe samples per
hypothesis (the Resampler's replicates), shared by its three bands and by the two
models (paired): each replicate leaves the same samples out of the per-sample
differences (eq. 8) or of both dataset matrices (eq. 9); the interval is the
estimate ± t_{G−1} standard errors, so it contains the estimate. Rank deficiency
is an integer decided on its value (exact); with no more samples than dimensions
a layer where both models have full row rank is undefined (``_informative_deficiency``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import depth
from harness.verdicts import claims, registry

PREFIX = "D:"
BANDS = ("first", "middle", "last")
SAMPLE, DATASET = "sample", "dataset"  # eq. 8 (paired per sample) and eq. 9 (dataset matrices)


@dataclass(frozen=True)
class Hypothesis:
    """One of the paper's directional statements: SFT moves ``metric`` in the direction of ``comparison``."""

    claim: str
    metric: str  # column of the profile tables (and, for sample-level metrics, the per-sample values)
    level: str  # SAMPLE or DATASET
    comparison: str  # "<": SFT lowers the metric; ">": SFT raises it
    title: str
    exact: bool = False  # no sampling variance: decided on the value

    @property
    def column(self) -> str:
        return f"delta_{self.metric}"


# Sparsity is the paper's "fraction of inactive neurons (|z| < ε) averaged over all dimensions" (§3.3), a
# statement about neurons on the tokens they process, with ε = 0.01 for "representation sparsity" (§4.1).
# That is the token-level sparsity of each sample's H_i (every token's activations), compared per sample
# (eq. 8). The sparsity of the mean-pooled dataset matrix is not that: a pooled coordinate near zero can be
# the average of large activations of both signs, which are not inactive neurons.
HYPOTHESES: dict[str, Hypothesis] = {
    h.claim: h
    for h in (
        Hypothesis("D:prompt_entropy", "prompt_entropy", SAMPLE, "<", "SFT lowers prompt entropy (eq. 2)"),
        Hypothesis("D:dataset_entropy", "dataset_entropy", DATASET, "<", "SFT lowers dataset entropy (eq. 3)"),
        Hypothesis("D:effective_rank", "effective_rank", DATASET, "<", "SFT lowers effective rank (eq. 4)"),
        Hypothesis(
            "D:rank_deficiency", "rank_deficiency", DATASET, ">", "SFT raises rank deficiency (§3.3)", exact=True
        ),
        Hypothesis("D:sparsity", "token_sparsity", SAMPLE, ">", "SFT raises sparsity (§3.3)"),
        Hypothesis("D:curvature", "curvature", SAMPLE, "<", "SFT lowers curvature (eq. 5)"),
    )
}


def is_directional(claim: str) -> bool:
    return claim.startswith(PREFIX)


def band_rows(n_layers: int) -> dict[str, list[int]]:
    """Profile rows (``harness.depth``'s numbering; row 0, the embeddings, is in no band) of the
    first 20%, the middle and the last 20% of ``n_layers`` decoder layers (``depth.layer_groups``)."""
    return {band: [depth.row_of_layer(i) for i in layers] for band, layers in depth.layer_groups(n_layers).items()}


def paired_means(differences: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Eq. 8 per layer: the (weighted) mean over samples of per-sample differences, shape (samples, rows).

    A sample whose metric is undefined at a layer (too few tokens) is left out of
    that layer's mean, as in the profile tables. With ``weights`` (B, samples),
    one row per reweighting, the result is (B, rows); without, (rows,).
    """
    differences = np.atleast_2d(np.asarray(differences, dtype=float))
    finite = np.isfinite(differences)
    values = np.where(finite, differences, 0.0)
    w = np.full((1, differences.shape[0]), 1.0) if weights is None else np.atleast_2d(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ values) / (w @ finite.astype(float))
    return means[0] if weights is None else means


def band_means(per_layer: np.ndarray, rows: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Mean of a per-row series (rows last; any leading axes) over each band's rows; NaN if a row is NaN."""
    per_layer = np.asarray(per_layer, dtype=float)
    return {band: per_layer[..., list(members)].mean(axis=-1) for band, members in rows.items()}


def condition_name(band: str) -> str:
    return f"{band}_band_delta"


def smallest_changes(hypothesis: Hypothesis, base_bands: Mapping[str, float] | None, t: Mapping) -> dict[str, float]:
    """Per band, the smallest change of interest (> 0): ``directional.margin`` plus
    ``directional.relative_margin[metric]`` times the size of the base model's own band mean. A difference
    smaller than it is no change the paper's direction speaks of, so it never "holds"."""
    margin = float(t["directional"]["margin"])
    share = float(t["directional"].get("relative_margin", {}).get(hypothesis.metric, 0.0))
    levels = base_bands or {}
    return {band: margin + share * abs(float(levels.get(band, 0.0))) for band in BANDS}


def directional_verdict(
    hypothesis: Hypothesis,
    bands: Mapping[str, float],
    t: Mapping,
    evidence: dict | None = None,
    base_bands: Mapping[str, float] | None = None,
) -> claims.Verdict:
    """The verdict of ``hypothesis`` from its band means of SFT − base: one deciding condition per band.

    Each band's threshold is its smallest change of interest (``smallest_changes``) in the claimed direction:
    Δ < −m for a metric SFT lowers, Δ > m for one it raises. A band holds when its whole interval lies beyond
    m, is refuted when its whole interval lies short of it (a rise, no change or a negligible one: the
    claimed change is not there), and is inconclusive otherwise.
    """
    smallest = smallest_changes(hypothesis, base_bands, t)
    relative = float(t["directional"].get("relative_margin", {}).get(hypothesis.metric, 0.0)) > 0
    key = "directional.relative_margin" if relative else "directional.margin"
    conditions = [
        claims.Condition(
            condition_name(band),
            _as_float(bands[band]),
            threshold := -smallest[band] if hypothesis.comparison == "<" else smallest[band],
            hypothesis.comparison,
            source=registry.DIRECTIONAL_BANDS[hypothesis.claim].provenance(claims.source(t, key), threshold),
        )
        for band in BANDS
    ]
    return claims.Verdict(hypothesis.claim, hypothesis.title, conditions, condition_name("last"), evidence or {})


def evaluate(
    hypothesis: Hypothesis,
    delta: Sequence[float] | np.ndarray,
    t: Mapping,
    resampled: np.ndarray | None = None,
    note: str = "",
    base: Sequence[float] | np.ndarray | None = None,
) -> claims.Verdict:
    """``hypothesis`` on the per-row differences ``delta`` (rows 0..L), with intervals from ``resampled``.

    ``resampled`` (G, rows) holds the same differences in G jackknife replicates;
    every band of one replicate leaves out the same samples. None (or an exact
    hypothesis): no intervals, decided on values. ``base`` (rows 0..L): the base
    model's own values, whose band means scale the smallest change of interest.
    """
    differences = np.asarray(delta, dtype=float)
    rows = band_rows(len(differences) - 1)
    evidence = {
        hypothesis.column: [None if math.isnan(v) else float(v) for v in differences],
        **{f"{band}_rows": list(r) for band, r in rows.items()},
    }
    means = {band: float(value) for band, value in band_means(differences, rows).items()}
    base_bands = None
    if base is not None:
        base_bands = {band: float(v) for band, v in band_means(np.asarray(base, dtype=float), rows).items()}
        evidence[f"base_{hypothesis.metric}"] = [None if math.isnan(v) else float(v) for v in np.asarray(base, float)]
    point = directional_verdict(hypothesis, means, t, evidence, base_bands)
    confidence = t["bootstrap"]["confidence"]
    if hypothesis.exact or resampled is None:
        reason = "an integer count, decided on its value: exact" if hypothesis.exact else note
        point.estimator = reason
        return claims.with_intervals(point, [], confidence, reason)
    point.estimator = (
        "paired mean over samples of the per-sample SFT − base difference (eq. 8)"
        if hypothesis.level == SAMPLE
        else "SFT − base difference of the N-sample matrices' own metric, on the same samples (eq. 9)"
    ) + f"; {note}"
    bands = band_means(np.asarray(resampled, dtype=float), rows)
    again = [
        directional_verdict(hypothesis, {b: float(bands[b][r]) for b in BANDS}, t, base_bands=base_bands)
        for r in range(len(resampled))
    ]
    return claims.with_intervals(point, again, confidence, note, jackknife=True)


def _as_float(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


# --- on a measured pair ---------------------------------------------------------------------------


def sample_differences(base_run, sft_run, metric: str) -> np.ndarray:
    """(token samples, rows) per-sample SFT − base values of a token-level metric: the pairs of eq. 8."""
    base, sft = base_run.sample_metric(metric), sft_run.sample_metric(metric)
    if base.shape != sft.shape:
        raise ValueError(f"{metric}: base and SFT have per-sample values of shapes {base.shape} and {sft.shape}")
    return sft - base


def measured_verdict(claim: str, profile, resampler, t: Mapping) -> claims.Verdict:
    """``claim`` on a profiled pair, from what its one forward pass per model and sample already captured."""
    delta, resampled, note = measured_inputs(claim, profile, resampler)
    return evaluate(HYPOTHESES[claim], delta, t, resampled, note, base_levels(claim, profile))


def base_levels(claim: str, profile) -> np.ndarray:
    """Per row, the base model's own value of ``claim``'s metric, as its difference is measured: the mean over
    the token-level samples (eq. 8) or the dataset matrix's metric (eq. 9)."""
    hypothesis = HYPOTHESES[claim]
    if hypothesis.level == SAMPLE:
        return paired_means(profile.base_run.sample_metric(hypothesis.metric))
    return profile.base[hypothesis.metric].reindex(profile.pair.index).to_numpy(dtype=float)


def measured_inputs(claim: str, profile, resampler) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The per-row differences of ``claim`` on a profiled pair, their resamples and the intervals' note.

    Sample-level differences are reweighted with the resampler's token-sample
    weights; dataset-level ones are read from its spectral resamples (both
    dataset matrices under the same weights), shared with the other claims.
    """
    hypothesis = HYPOTHESES[claim]
    if hypothesis.level == SAMPLE:
        differences = sample_differences(profile.base_run, profile.sft_run, hypothesis.metric)
        delta = paired_means(differences)
        resampled = None if hypothesis.exact else paired_means(differences, resampler.token_weights)
        note = (
            f"jackknife intervals (estimate ± t_{len(resampler.token_weights) - 1} standard errors) over "
            f"{len(resampler.token_weights)} groups of the {differences.shape[0]} token-level samples, paired (eq. 8)"
        )
    else:
        delta = profile.pair[hypothesis.column].to_numpy(dtype=float)
        if hypothesis.metric == "rank_deficiency":
            delta = _informative_deficiency(delta, profile)
        resampled = None
        if not hypothesis.exact:
            bundles = resampler.bundles("spectral")
            resampled = np.stack([_row_values(b[hypothesis.column], profile.pair.index) for b in bundles])
        note = resampler.note + ", both models under the same weights (eq. 9)"
    return delta, resampled, note


def _informative_deficiency(delta: np.ndarray, profile) -> np.ndarray:
    """The rank-deficiency differences that say something: rank deficiency is min(N, D) − rank, so with no
    more samples than dimensions (N ≤ D, every real model's probe set) a pooled matrix of full row rank reads
    0 whatever the rank its model would show on more samples. A layer where both models read 0 there is
    undefined (NaN: never "holds" or "refuted"), not "no change"; a deficiency either model does show
    (rank below N) still counts."""
    run = profile.base_run
    samples, width = run.n_samples, int(run.pooled(0).shape[1])
    if samples > width:
        return delta
    index = profile.pair.index
    both_full = (profile.base["rank_deficiency"].reindex(index).to_numpy(dtype=float) == 0) & (
        profile.sft["rank_deficiency"].reindex(index).to_numpy(dtype=float) == 0
    )
    return np.where(both_full, np.nan, delta)


def _row_values(series: pd.Series | claims.Rows, index: pd.Index) -> np.ndarray:
    if isinstance(series, claims.Rows):
        return series.take(index.tolist())
    return series.reindex(index).to_numpy(dtype=float)
