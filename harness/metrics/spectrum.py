"""Spectral metrics of a representation matrix (§3.3): entropy, effective rank, rank, conditioning.

Every metric here is a function of the singular values σ of z (the eigenvalues
of K = z zᵀ are σ²), so ``spectral_summary`` takes one SVD and derives them
all; the single-metric functions are thin wrappers over the same helpers.
"""

from __future__ import annotations

import math

import torch

from harness.metrics._checks import DegenerateInputError, as_matrix


def singular_values(z: torch.Tensor) -> torch.Tensor:
    """σ of z in float64, descending."""
    return torch.linalg.svdvals(as_matrix(z))


def _precision(z: torch.Tensor) -> float:
    """Machine epsilon of the input's own dtype: float32 activations carry float32 noise even in float64."""
    return torch.finfo(z.dtype).eps if z.is_floating_point() else torch.finfo(torch.float64).eps


def _rank_from(sigma: torch.Tensor, shape: tuple[int, int], eps: float) -> int:
    # numpy's matrix_rank tolerance: σ > σ_max · max(N, D) · epsilon of the input dtype
    if sigma.numel() == 0 or sigma[0] == 0:
        return 0
    return int((sigma > sigma[0] * max(shape) * eps).sum())


def _shares(sigma: torch.Tensor, what: str) -> torch.Tensor:
    energy = sigma ** 2
    total = energy.sum()
    if total <= 0:
        raise DegenerateInputError(f"{what} of an all-zero matrix is undefined")
    shares = energy / total
    return shares[shares > 0]


def _entropy_from(sigma: torch.Tensor, rows: int, alpha: float, normalize: bool, log_base: float) -> float:
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    if normalize and rows < 2:
        raise DegenerateInputError("normalised entropy needs at least 2 rows (it divides by log N)")
    p = _shares(sigma, "entropy")
    if abs(alpha - 1.0) < 1e-12:
        entropy = -(p * torch.log(p)).sum()
    else:
        entropy = torch.log((p ** alpha).sum()) / (1 - alpha)
    entropy = max(float(entropy), 0.0) / math.log(log_base)
    return entropy / (math.log(rows) / math.log(log_base)) if normalize else entropy


def matrix_entropy(z: torch.Tensor, alpha: float = 1.0, normalize: bool = True, log_base: float = 2.0) -> float:
    """α-order matrix-based entropy S_α(K) of K = z zᵀ (§3.1; eqs. 2-3).

    S_α = 1/(1-α) · log Σ λ̃_j^α with λ̃ the eigenvalues of K / tr(K); α = 1 is
    the von Neumann limit -Σ λ̃ log λ̃. ``log_base`` 2 as the paper writes it.
    With ``normalize`` the value is divided by log N, N the number of rows of z
    (§4.1), so it lies in [0, 1]: 0 when K has rank one, 1 when the rows are
    orthogonal with equal norms.
    """
    z = as_matrix(z, "entropy input")
    return _entropy_from(torch.linalg.svdvals(z), z.shape[0], alpha, normalize, log_base)


def prompt_entropy(h: torch.Tensor, alpha: float = 1.0, normalize: bool = True) -> float:
    """Prompt entropy S_p (eq. 2): matrix entropy of one sample's token states h, shape (T, D)."""
    return matrix_entropy(h, alpha=alpha, normalize=normalize)


def dataset_entropy(pooled: torch.Tensor, alpha: float = 1.0, normalize: bool = True) -> float:
    """Dataset entropy S_d (eq. 3): matrix entropy of the mean-pooled sample vectors, shape (N, D)."""
    return matrix_entropy(pooled, alpha=alpha, normalize=normalize)


def _effective_rank_from(sigma: torch.Tensor) -> float:
    p = _shares(sigma, "effective rank")
    return float(torch.exp(-(p * torch.log(p)).sum()))


def effective_rank(z: torch.Tensor) -> float:
    """Effective rank (eq. 4): exp of the Shannon entropy (natural log) of p_j = σ_j² / Σ σ_k².

    Lies in [1, rank(z)]; equals k when z has k equal non-zero singular values.
    """
    return _effective_rank_from(singular_values(z))


def numerical_rank(z: torch.Tensor) -> int:
    """Rank with numpy's default tolerance: σ > σ_max · max(N, D) · epsilon of z's dtype."""
    eps = _precision(z)
    z = as_matrix(z)
    return _rank_from(torch.linalg.svdvals(z), tuple(z.shape), eps)


def rank_deficiency(z: torch.Tensor) -> int:
    """Def = min(N, D) − rank (§3.3)."""
    return min(as_matrix(z).shape) - numerical_rank(z)


def spectral_norm(z: torch.Tensor) -> float:
    """Largest singular value σ_1."""
    return float(singular_values(z)[0])


def _condition_from(sigma: torch.Tensor, shape: tuple[int, int], eps: float) -> float:
    rank = _rank_from(sigma, shape, eps)
    if rank == 0:
        raise DegenerateInputError("condition number of an all-zero matrix is undefined")
    return float(sigma[0] / sigma[rank - 1])


def condition_number(z: torch.Tensor) -> float:
    """σ_1 / σ_r, with σ_r the smallest singular value above the numerical-rank tolerance.

    Zero singular values (N < D, or collapsed directions) are left out, as the
    paper's finite values (~45 for OLMo2-13B with N < D) require. Like any
    condition number, it is accurate only to about (value × epsilon) relative.
    """
    eps = _precision(z)
    z = as_matrix(z)
    return _condition_from(torch.linalg.svdvals(z), tuple(z.shape), eps)


def sparsity(z: torch.Tensor, eps: float = 0.01) -> float:
    """Share of entries with |z| < eps (§3.3; ε = 0.01 as in §4.1)."""
    z = as_matrix(z.reshape(-1, z.shape[-1]) if z.ndim > 2 else z, "sparsity input")
    return float((z.abs() < eps).double().mean())


def spectral_summary(z: torch.Tensor, alpha: float = 1.0, normalize: bool = True,
                     sparsity_eps: float = 0.01) -> dict[str, float]:
    """Every spectral metric of one matrix from a single SVD (what a layer profile needs)."""
    eps = _precision(z)
    z = as_matrix(z, "representation", min_rows=2 if normalize else 1)
    sigma = torch.linalg.svdvals(z)
    shape = tuple(z.shape)
    return {
        "entropy": _entropy_from(sigma, shape[0], alpha, normalize, 2.0),
        "effective_rank": _effective_rank_from(sigma),
        "rank_deficiency": float(min(shape) - _rank_from(sigma, shape, eps)),
        "condition_number": _condition_from(sigma, shape, eps),
        "spectral_norm": float(sigma[0]),
        "sparsity": float((z.abs() < sparsity_eps).double().mean()),
    }
