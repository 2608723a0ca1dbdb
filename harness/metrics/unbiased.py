"""Linear CKA (eq. 6) estimated without the small-sample bias of the plug-in value, with a jackknife interval.

The plug-in CKA of eq. 6 is biased upwards when the sample count N is not large against the width D: at
N = 100 and D = 400, a population CKA of 0.945 reads about 0.99. Real pairs live there (D = 2,048-5,120
against the paper's N = 1,000). This module estimates the same population quantity,

    CKA = ‖Σ_xy‖²_F / (‖Σ_xx‖_F ‖Σ_yy‖_F),

the linear-kernel HSIC of x and y over the square root of each one's HSIC with itself, from the unbiased
HSIC estimator of Song et al. (2012): a U-statistic whose expectation is the population HSIC at every N ≥ 4,
whatever D. The ratio of three unbiased estimates is not itself unbiased, but its bias is of order 1/N and
does not grow with D. The estimate is not clamped to [0, 1]: clamping would bias it again.

Its uncertainty is the jackknife's: the estimate recomputed with each sample left out (in O(N²) in all,
by updating the U-statistic's sums), the standard error sqrt((N − 1)/N · Σ (θ₋ᵢ − θ̄)²), and an interval
symmetric about the estimate, which therefore always contains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from harness.metrics._checks import DegenerateInputError, as_matrix

MIN_SAMPLES = 5  # the unbiased HSIC needs N ≥ 4, and its leave-one-out values N − 1 ≥ 4


def _gram(z: torch.Tensor) -> tuple[np.ndarray, float]:
    """The linear-kernel Gram matrix of the rows, in float64, with a zero diagonal (the U-statistic's K̃),
    and the rows' mean energy tr(K)/N. The rows are centred first: the estimator does not depend on a common
    shift, and a large one (real activations have non-zero means) would cost precision."""
    values = z.detach().to(torch.float64).cpu().numpy()
    values = values - values.mean(axis=0, keepdims=True)
    gram = values @ values.T
    energy = float(np.trace(gram)) / len(gram)
    np.fill_diagonal(gram, 0.0)
    return gram, energy


@dataclass(frozen=True)
class _Sums:
    """The sums the unbiased HSIC of K̃ and L̃ is made of, and each sample's share of them."""

    n: int
    s1: float  # Σ_ij K̃_ij L̃_ij
    total_k: float  # Σ_ij K̃_ij
    total_l: float
    s3: float  # Σ_i k_i l_i, with k = K̃ 1 and l = L̃ 1
    k: np.ndarray
    l: np.ndarray  # noqa: E741 - the estimator's own letter
    p: np.ndarray  # p_m = Σ_j K̃_mj L̃_mj
    k_l: np.ndarray  # (K̃ l)_m
    l_k: np.ndarray  # (L̃ k)_m

    @classmethod
    def of(cls, gram_k: np.ndarray, gram_l: np.ndarray, product: np.ndarray | None = None) -> _Sums:
        """The sums of K̃ and L̃ (``product``: their elementwise product, when the caller has it already)."""
        k, l = gram_k.sum(axis=1), gram_l.sum(axis=1)  # noqa: E741
        p = (gram_k * gram_l if product is None else product).sum(axis=1)
        return cls(
            len(k), float(p.sum()), float(k.sum()), float(l.sum()), float(k @ l), k, l, p, gram_k @ l, gram_l @ k
        )


def _hsic(n, s1, total_k, total_l, s3):
    """Song et al. (2012), eq. 5: [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))."""
    return (s1 + total_k * total_l / ((n - 1) * (n - 2)) - 2 * s3 / (n - 2)) / (n * (n - 3))


def unbiased_hsic(gram_k: np.ndarray, gram_l: np.ndarray) -> float:
    """The unbiased estimate of HSIC from two zero-diagonal Gram matrices of the same N ≥ 4 samples."""
    sums = _Sums.of(gram_k, gram_l)
    return float(_hsic(sums.n, sums.s1, sums.total_k, sums.total_l, sums.s3))


def _leave_one_out_hsic(sums: _Sums) -> np.ndarray:
    """The unbiased HSIC with each sample left out in turn, from the full sample's sums (O(N) given them)."""
    s1 = sums.s1 - 2 * sums.p
    total_k = sums.total_k - 2 * sums.k
    total_l = sums.total_l - 2 * sums.l
    s3 = sums.s3 - sums.k * sums.l - sums.k_l - sums.l_k + sums.p
    return _hsic(sums.n - 1, s1, total_k, total_l, s3)


@dataclass(frozen=True)
class CkaEstimate:
    """A debiased linear CKA with its jackknife standard error and leave-one-out values."""

    value: float
    standard_error: float
    leave_one_out: np.ndarray  # (N,) the estimate with each sample left out
    plug_in: float  # eq. 6's plug-in value on the same samples, for comparison with the paper's figures
    # each side's HSIC with itself over its squared mean energy (tr K̃/N)²: in (0, 1], and near 0 when the
    # estimate rests on the cancellation of much larger sums (a near-constant side)
    conditioning: float = 1.0

    @property
    def n(self) -> int:
        return len(self.leave_one_out)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The jackknife interval: the estimate ± t_{N−1} standard errors (always contains the estimate)."""
        half = float(stats.t.ppf(0.5 + confidence / 2, self.n - 1)) * self.standard_error
        return self.value - half, self.value + half


def _ratio(cross, own_x, own_y):
    """cross / sqrt(own_x · own_y), NaN wherever either self-HSIC is not positive (undefined, even where both
    are negative and their product is not)."""
    own_x, own_y = np.asarray(own_x, dtype=float), np.asarray(own_y, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((own_x > 0) & (own_y > 0), cross / np.sqrt(np.abs(own_x * own_y)), np.nan)


def debiased_linear_cka(x: torch.Tensor, y: torch.Tensor) -> CkaEstimate:
    """Linear CKA (eq. 6) of two representations of the same N samples, shapes (N, D_x) and (N, D_y),
    estimated from unbiased HSICs (Song et al., 2012), with its jackknife over samples.

    The value estimates the population CKA ‖Σ_xy‖²_F / (‖Σ_xx‖_F ‖Σ_yy‖_F) at any N ≥ 5 and any width;
    ``plug_in`` is eq. 6 itself on the same samples.
    """
    from harness.metrics.geometry import linear_cka

    x, y = as_matrix(x, "CKA x", min_rows=MIN_SAMPLES), as_matrix(y, "CKA y", min_rows=MIN_SAMPLES)
    if x.shape[0] != y.shape[0]:
        raise DegenerateInputError(f"CKA needs the same samples on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    (gram_x, energy_x), (gram_y, energy_y) = _gram(x), _gram(y)
    parts = {
        key: _Sums.of(a, b)
        for key, (a, b) in {"xy": (gram_x, gram_y), "xx": (gram_x, gram_x), "yy": (gram_y, gram_y)}.items()
    }
    full = {key: _hsic(s.n, s.s1, s.total_k, s.total_l, s.s3) for key, s in parts.items()}
    if full["xx"] <= 0 or full["yy"] <= 0:
        raise DegenerateInputError(
            "debiased CKA is undefined: one side's estimated HSIC with itself is not positive "
            "(no variance, or too few samples for its spread)"
        )
    value = float(_ratio(full["xy"], full["xx"], full["yy"]))
    loo = _ratio(*(_leave_one_out_hsic(parts[key]) for key in ("xy", "xx", "yy")))
    finite = loo[np.isfinite(loo)]
    n = len(loo)
    if len(finite) < n:  # a leave-one-out self-HSIC that is not positive: the spread cannot be estimated
        standard_error = math.nan
    else:
        standard_error = float(math.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))
    conditioning = min(full["xx"] / energy_x**2, full["yy"] / energy_y**2)
    return CkaEstimate(value, standard_error, loo, linear_cka(x, y), conditioning)


@dataclass(frozen=True)
class ShiftEstimate:
    """A mean shift estimated without its noise floor, with a jackknife interval on its square."""

    squared: float  # unbiased estimate of ‖μ_y − μ_x‖², which may be negative when the shift is small
    standard_error: float  # jackknife standard error of ``squared``
    n: int
    plug_in: float  # §3.4's ‖ȳ − x̄‖ on the same samples

    @property
    def value(self) -> float:
        """The estimate of ‖μ_y − μ_x‖: the square root of the unbiased square (0 when that is negative)."""
        return math.sqrt(max(self.squared, 0.0))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The jackknife t interval of the square, mapped through the square root (clipped at 0): it keeps
        its order, so it always contains ``value``."""
        half = float(stats.t.ppf(0.5 + confidence / 2, self.n - 1)) * self.standard_error
        return math.sqrt(max(self.squared - half, 0.0)), math.sqrt(max(self.squared + half, 0.0))


def debiased_mean_shift(x: torch.Tensor, y: torch.Tensor) -> ShiftEstimate:
    """The mean shift D_SFT = ‖μ_y − μ_x‖ (§3.4) of paired representations of the same N samples, shapes
    (N, D), estimated without the noise floor of the plug-in ‖ȳ − x̄‖, whose square exceeds ‖μ_y − μ_x‖² by
    tr(Σ_d)/N on average (d = y − x): at N < D that floor can dwarf a small shift.

    The square is estimated by the U-statistic (1/(N(N−1))) Σ_{i≠j} d_iᵀ d_j, unbiased at every N ≥ 2 and
    width, with a jackknife over samples (leave-one-out values from the full sample's sums).
    """
    x, y = as_matrix(x, "mean shift x", min_rows=3), as_matrix(y, "mean shift y", min_rows=3)
    if x.shape != y.shape:
        raise DegenerateInputError(f"the mean shift pairs each sample: shapes {tuple(x.shape)} and {tuple(y.shape)}")
    d = (y.detach().to(torch.float64) - x.detach().to(torch.float64)).cpu().numpy()
    n = len(d)
    total = d.sum(axis=0)
    squares = (d**2).sum(axis=1)
    pairs = float(total @ total) - float(squares.sum())  # Σ_{i≠j} d_iᵀ d_j
    squared = pairs / (n * (n - 1))
    loo_pairs = pairs - 2 * (d @ total - squares)  # leaving sample m out removes its 2 Σ_{j≠m} d_mᵀ d_j
    loo = loo_pairs / ((n - 1) * (n - 2))
    standard_error = float(math.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))
    return ShiftEstimate(squared, standard_error, n, float(np.linalg.norm(total / n)))


def _left_out(kept: np.ndarray) -> np.ndarray:
    """(N, G) indicator of the samples each row of ``kept`` (G, N) leaves out (its zero entries)."""
    return (np.atleast_2d(kept) <= 0).T.astype(float)


def _leave_groups_out_hsic(
    sums: _Sums, product: np.ndarray, k_out: np.ndarray, l_out: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """The unbiased HSIC with each column's samples of ``out`` (N, G) left out, from the full sample's ``sums``
    of K̃ and L̃, their elementwise ``product`` and their sums over each left-out set (``k_out`` = K̃·out,
    ``l_out`` = L̃·out): leaving a set S out removes its rows and columns from each sum (and adds back the block
    counted twice), as ``_leave_one_out_hsic`` does for one sample; no submatrix."""
    a, b = k_out, l_out  # (N, G): each sample's sums over the left-out set
    inside = product @ out
    n = sums.n - out.sum(axis=0)
    s1 = sums.s1 - 2 * (out.T @ sums.p) + (out * inside).sum(axis=0)
    total_k = sums.total_k - 2 * (out.T @ sums.k) + (out * a).sum(axis=0)
    total_l = sums.total_l - 2 * (out.T @ sums.l) + (out * b).sum(axis=0)
    kept = 1.0 - out

    def kept_sum(values: np.ndarray) -> np.ndarray:  # Σ over the kept samples m of values[m, g]
        return (kept * values).sum(axis=0)

    k, l = sums.k[:, None], sums.l[:, None]  # noqa: E741 - the estimator's own letter
    s3 = kept_sum(k * l) - kept_sum(k * b) - kept_sum(a * l) + kept_sum(a * b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 4, _hsic(n, s1, total_k, total_l, s3), np.nan)


def debiased_cka_kept(x: torch.Tensor, y: torch.Tensor, kept: np.ndarray) -> tuple[float, np.ndarray]:
    """The debiased linear CKA of ``debiased_linear_cka`` on all N samples, and on the samples each row of
    ``kept`` (G, N) keeps (positive entries): the replicates of a delete-a-group jackknife. A subset whose
    self-HSIC is not positive gives NaN (undefined). Each Gram matrix, its products with the left-out sets and
    each pair's full-sample sums are formed once, for the full value and the replicates alike."""
    x, y = as_matrix(x, "CKA x", min_rows=MIN_SAMPLES), as_matrix(y, "CKA y", min_rows=MIN_SAMPLES)
    if x.shape[0] != y.shape[0]:
        raise DegenerateInputError(f"CKA needs the same samples on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    out = _left_out(kept)
    grams = {"x": _gram(x)[0], "y": _gram(y)[0]}
    left_out = {side: gram @ out for side, gram in grams.items()}
    full, replicates = {}, {}
    for key, (k_side, l_side) in {"xy": ("x", "y"), "xx": ("x", "x"), "yy": ("y", "y")}.items():
        product = grams[k_side] * grams[l_side]
        sums = _Sums.of(grams[k_side], grams[l_side], product)
        full[key] = float(_hsic(sums.n, sums.s1, sums.total_k, sums.total_l, sums.s3))
        replicates[key] = _leave_groups_out_hsic(sums, product, left_out[k_side], left_out[l_side], out)
    return float(_ratio(full["xy"], full["xx"], full["yy"])), _ratio(*(replicates[key] for key in ("xy", "xx", "yy")))


def debiased_shift_kept(x: torch.Tensor, y: torch.Tensor, kept: np.ndarray) -> tuple[float, np.ndarray]:
    """The debiased mean shift of ``debiased_mean_shift`` (the square root of the unbiased square, 0 when
    that is negative) on all N samples, and on the samples each row of ``kept`` (G, N) keeps."""
    x, y = as_matrix(x, "mean shift x", min_rows=3), as_matrix(y, "mean shift y", min_rows=3)
    if x.shape != y.shape:
        raise DegenerateInputError(f"the mean shift pairs each sample: shapes {tuple(x.shape)} and {tuple(y.shape)}")
    d = (y.detach().to(torch.float64) - x.detach().to(torch.float64)).cpu().numpy()
    masks = np.vstack([np.ones(len(d)), (np.atleast_2d(kept) > 0).astype(float)])  # row 0: every sample
    totals = masks @ d  # (1 + G, D)
    counts = masks.sum(axis=1)
    pairs = (totals**2).sum(axis=1) - masks @ (d**2).sum(axis=1)  # Σ_{i≠j} d_iᵀ d_j over each subset
    with np.errstate(invalid="ignore", divide="ignore"):
        squared = np.where(counts >= 2, pairs / (counts * (counts - 1)), np.nan)
    values = np.sqrt(np.maximum(squared, 0.0))
    return float(values[0]), values[1:]
