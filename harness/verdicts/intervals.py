"""Intervals for verdicts: percentile intervals over joint resamples, and a seed-aware widening.

Pure functions of arrays. A claim's conditions are recomputed on every resample
(one joint resampling for all conditions, so they stay consistent, and any pick
of a best arm or segment is redone inside each resample); each condition's
interval is the percentile interval of its resampled values.

Few training seeds: resampling 3 seeds with replacement underestimates the
between-seed variance (by (n − 1) / n) and ignores that it is estimated from n − 1
degrees of freedom. ``seed_aware_interval`` splits the bootstrap variance into an
item part and a between-seed excess, and inflates the excess as a t interval with
n − 1 degrees of freedom would (measured calibration: tests/test_calibration.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

Values = Sequence[float] | np.ndarray  # resampled values: a list or an array


def percentile_interval(values: Values, confidence: float) -> tuple[float, float] | None:
    """The central ``confidence`` percentile interval of the finite values (None when there are none)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def seed_inflation(n_seeds: int, confidence: float) -> float:
    """Factor on the between-seed variance: n / (n − 1) · (t_{n−1} / z)², 1 for a single seed (no seed variance)."""
    if n_seeds < 2:
        return 1.0
    z = stats.norm.ppf(0.5 + confidence / 2)
    t = stats.t.ppf(0.5 + confidence / 2, n_seeds - 1)
    return n_seeds / (n_seeds - 1) * (t / z) ** 2


def seed_aware_interval(
    point: float, joint: Values, seeds_only: Values, items_only: Values, n_seeds: int, confidence: float
) -> tuple[float, float] | None:
    """The joint percentile interval, widened about ``point`` for the uncertainty of few seeds.

    ``joint`` resamples seeds and items, ``seeds_only`` seeds with items fixed,
    ``items_only`` items with seeds fixed. Seed means vary by item noise alone by
    (n − 1) / n of the item-only variance; what exceeds that is between-seed
    variance, and only that part is inflated (``seed_inflation``).
    """
    interval = percentile_interval(joint, confidence)
    if interval is None or not math.isfinite(point):
        return interval
    v_joint, v_seeds, v_items = (float(np.nanvar(np.asarray(v, dtype=float))) for v in (joint, seeds_only, items_only))
    excess = max(0.0, v_seeds - (n_seeds - 1) / n_seeds * v_items) if n_seeds > 1 else 0.0
    adjusted = v_items + excess * seed_inflation(n_seeds, confidence)
    scale = max(1.0, math.sqrt(adjusted / v_joint)) if v_joint > 0 else 1.0
    low, high = interval
    return point - scale * (point - low), point + scale * (high - point)


def dirichlet_weights(count: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, count) Bayesian-bootstrap weights, each row summing to 1.

    Unlike rows drawn with replacement, no sample is duplicated, so the rank of a
    weighted representation matrix is the rank of the original: spectral metrics
    are not biased by repeated rows.
    """
    if count < 1:
        raise ValueError("nothing to resample")
    return rng.dirichlet(np.ones(count), size=resamples)
