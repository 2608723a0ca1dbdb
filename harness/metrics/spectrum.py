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


def rank_tolerance(shape: tuple[int, int], eps: float) -> float:
    """Relative tolerance σ / σ_max below which a singular value counts as zero: D · epsilon of the input dtype.

    numpy's default, max(N, D) · epsilon, grows with the number of rows: at N = 1,000
    samples of D = 128 it caps every condition number at ~8,400 and makes rank
    deficiency a function of N. Counting the features alone keeps rank, deficiency
    and condition number unchanged when every row is repeated.
    """
    return shape[1] * eps


def _ranks(sigmas: torch.Tensor, shape: tuple[int, int], eps: float) -> torch.Tensor:
    """(B,) ranks of B matrices of ``shape`` from their singular values (B, k), descending."""
    if sigmas.shape[-1] == 0:
        return torch.zeros(sigmas.shape[0], dtype=torch.long)
    return (sigmas > sigmas[:, :1] * rank_tolerance(shape, eps)).sum(-1)  # 0 where σ_1 is 0


def _rank_from(sigma: torch.Tensor, shape: tuple[int, int], eps: float) -> int:
    return int(_ranks(sigma[None], shape, eps)[0])


def _shares(sigmas: torch.Tensor, what: str) -> torch.Tensor:
    """(B, k) energy shares σ_j² / Σ σ² of B matrices (zero shares kept as 0)."""
    energy = sigmas**2
    total = energy.sum(-1, keepdim=True)
    if (total <= 0).any():
        raise DegenerateInputError(f"{what} of an all-zero matrix is undefined")
    return energy / total


def _shannon(p: torch.Tensor) -> torch.Tensor:
    """(B,) −Σ p log p (natural log) over each row's positive shares."""
    return -(p * torch.where(p > 0, p, torch.ones_like(p)).log()).sum(-1)


def _shape(z: torch.Tensor) -> tuple[int, int]:
    return int(z.shape[0]), int(z.shape[1])


def max_rank(shape: tuple[int, int]) -> int:
    """min(N, D): the largest rank, hence the largest entropy (log of it), a matrix of this shape can have."""
    return min(shape)


def _entropies(
    sigmas: torch.Tensor, shape: tuple[int, int], alpha: float, normalize: bool, log_base: float
) -> torch.Tensor:
    """(B,) matrix entropies (``matrix_entropy``) of B matrices of ``shape`` from their singular values (B, k)."""
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    if normalize and max_rank(shape) < 2:
        raise DegenerateInputError(
            "normalised entropy needs at least 2 rows and 2 features (it divides by log min(N, D))"
        )
    p = _shares(sigmas, "entropy")
    if abs(alpha - 1.0) < 1e-12:
        raw = _shannon(p)
    else:  # over the positive shares only (0 ** 0 would count a zero as 1)
        raw = torch.log(torch.where(p > 0, p**alpha, torch.zeros_like(p)).sum(-1)) / (1 - alpha)
    entropy = raw.clamp_min(0.0) / math.log(log_base)
    return entropy / (math.log(max_rank(shape)) / math.log(log_base)) if normalize else entropy


def _entropy_from(sigma: torch.Tensor, shape: tuple[int, int], alpha: float, normalize: bool, log_base: float) -> float:
    return float(_entropies(sigma[None], shape, alpha, normalize, log_base)[0])


def matrix_entropy(z: torch.Tensor, alpha: float = 1.0, normalize: bool = True, log_base: float = 2.0) -> float:
    """α-order matrix-based entropy S_α(K) of K = z zᵀ (§3.1; eqs. 2-3).

    S_α = 1/(1-α) · log Σ λ̃_j^α with λ̃ the eigenvalues of K / tr(K); α = 1 is
    the von Neumann limit -Σ λ̃ log λ̃. ``log_base`` 2 as the paper writes it.
    With ``normalize`` the value is divided by log min(N, D), the largest entropy
    a matrix of this shape can reach, so it lies in [0, 1]: 0 when K has rank one,
    1 when every direction carries equal energy. That is the paper's log N (§4.1)
    whenever N ≤ D (every token-level matrix here); for N > D it does not change
    when samples are repeated, which log N would.
    """
    z = as_matrix(z, "entropy input")
    return _entropy_from(torch.linalg.svdvals(z), _shape(z), alpha, normalize, log_base)


def prompt_entropy(h: torch.Tensor, alpha: float = 1.0, normalize: bool = True) -> float:
    """Prompt entropy S_p (eq. 2): matrix entropy of one sample's token states h, shape (T, D)."""
    return matrix_entropy(h, alpha=alpha, normalize=normalize)


def dataset_entropy(pooled: torch.Tensor, alpha: float = 1.0, normalize: bool = True) -> float:
    """Dataset entropy S_d (eq. 3): matrix entropy of the mean-pooled sample vectors, shape (N, D)."""
    return matrix_entropy(pooled, alpha=alpha, normalize=normalize)


def _effective_rank_from(sigma: torch.Tensor) -> float:
    return float(_shannon(_shares(sigma[None], "effective rank")).exp()[0])


def effective_rank(z: torch.Tensor) -> float:
    """Effective rank (eq. 4): exp of the Shannon entropy (natural log) of p_j = σ_j² / Σ σ_k².

    Lies in [1, rank(z)]; equals k when z has k equal non-zero singular values.
    """
    return _effective_rank_from(singular_values(z))


def numerical_rank(z: torch.Tensor) -> int:
    """Rank: the singular values above σ_max · ``rank_tolerance`` (D · epsilon of z's dtype)."""
    eps = _precision(z)
    z = as_matrix(z)
    return _rank_from(torch.linalg.svdvals(z), _shape(z), eps)


def rank_deficiency(z: torch.Tensor) -> int:
    """Def = min(N, D) − rank (§3.3)."""
    return min(as_matrix(z).shape) - numerical_rank(z)


def spectral_norm(z: torch.Tensor) -> float:
    """Largest singular value σ_1."""
    return float(singular_values(z)[0])


def _conditions(sigmas: torch.Tensor, shape: tuple[int, int], eps: float) -> torch.Tensor:
    """(B,) σ_1 / σ_r of B matrices, σ_r the smallest singular value above the rank tolerance."""
    ranks = _ranks(sigmas, shape, eps)
    if (ranks == 0).any():
        raise DegenerateInputError("condition number of an all-zero matrix is undefined")
    return sigmas[:, 0] / sigmas.gather(1, (ranks - 1)[:, None])[:, 0]


def _condition_from(sigma: torch.Tensor, shape: tuple[int, int], eps: float) -> float:
    return float(_conditions(sigma[None], shape, eps)[0])


def condition_number(z: torch.Tensor) -> float:
    """σ_1 / σ_r, with σ_r the smallest singular value above the numerical-rank tolerance.

    Zero singular values (N < D, or collapsed directions) are left out, as the
    paper's finite values (~45 for OLMo2-13B with N < D) require. Like any
    condition number, it is accurate only to about (value × epsilon) relative.
    """
    eps = _precision(z)
    z = as_matrix(z)
    return _condition_from(torch.linalg.svdvals(z), _shape(z), eps)


def sparsity(z: torch.Tensor, eps: float = 0.01) -> float:
    """Share of entries with |z| < eps (§3.3; ε = 0.01 as in §4.1)."""
    z = as_matrix(z.reshape(-1, z.shape[-1]) if z.ndim > 2 else z, "sparsity input")
    return float((z.abs() < eps).double().mean())


def spectral_summary(
    z: torch.Tensor, alpha: float = 1.0, normalize: bool = True, sparsity_eps: float = 0.01
) -> dict[str, float]:
    """Every spectral metric of one matrix from a single SVD (what a layer profile needs)."""
    eps = _precision(z)
    z = as_matrix(z, "representation", min_rows=2 if normalize else 1)
    return {
        **summary_of_singular_values(torch.linalg.svdvals(z), _shape(z), eps, alpha, normalize),
        "sparsity": float((z.abs() < sparsity_eps).double().mean()),
    }


def summary_of_singular_values(
    sigma: torch.Tensor, shape: tuple[int, int], eps: float, alpha: float = 1.0, normalize: bool = True
) -> dict[str, float]:
    """``spectral_summary``'s metrics (all but sparsity) of a (N, D) = ``shape`` matrix from its singular values
    ``sigma`` (descending), ``eps`` the precision of its dtype."""
    return {
        name: float(values[0])
        for name, values in spectra_of_singular_values(sigma[None], shape, eps, alpha, normalize).items()
    }


def spectra_of_singular_values(
    sigmas: torch.Tensor, shape: tuple[int, int], eps: float, alpha: float = 1.0, normalize: bool = True
) -> dict[str, torch.Tensor]:
    """``summary_of_singular_values`` of B matrices of one ``shape`` at once, from their singular values
    (B, k), each row descending: (B,) per metric."""
    entropy = _entropies(sigmas, shape, alpha, normalize, 2.0)  # first: it says what is degenerate
    return {
        "entropy": entropy,
        "effective_rank": _shannon(_shares(sigmas, "effective rank")).exp(),
        "rank_deficiency": (min(shape) - _ranks(sigmas, shape, eps)).to(sigmas.dtype),
        "condition_number": _conditions(sigmas, shape, eps),
        "spectral_norm": sigmas[:, 0],
    }


def weighted_spectra(
    z: torch.Tensor, weights: torch.Tensor, alpha: float = 1.0, normalize: bool = True, eps: float | None = None
) -> dict[str, torch.Tensor]:
    """The spectral metrics of diag(√(n·w)) z for every row w of ``weights`` (B, N), at once, n the count of
    positive weights in the row.

    With every weight positive (a Bayesian-bootstrap resample of the rows of z, N × D)
    no row is duplicated, so the rank of each weighted matrix is exactly the rank of
    z. A weight of zero leaves its row out (a jackknife replicate): the rows kept
    then have rank min(rank of z, n), exact when z has full row rank (any subset of
    independent rows is independent) and generic otherwise, and the entropy is
    normalised by log min(n, D), as it would be on the kept rows alone. The rank is
    taken from one SVD of z, with ``spectral_summary``'s rule:
    the weighted singular values come from eigenvalues of Gram matrices, which
    resolve σ_j only down to about √(min(N, D) · ε₆₄) · σ_1, far above the rank
    tolerance, so counting them would turn numerical zeros into rank (and, for
    float64 input, give a negative rank deficiency and a condition number of ~1e8).

    The squared singular values are the eigenvalues of the (B, N, N) matrices
    diag(√(N·w)) z zᵀ diag(√(N·w)) when N < D, otherwise of the (B, D, D)
    second moments zᵀ diag(N·w) z: the smaller side, which also leaves out the
    structural zeros of the larger one. With uniform weights every value equals
    ``spectral_summary``'s. ``eps`` is the precision of the data before it was
    promoted to float64 (default: z's own dtype).
    """
    eps = _precision(z) if eps is None else eps
    z = as_matrix(z, "representation", min_rows=2 if normalize else 1)
    n, d = z.shape
    if normalize and max_rank((n, d)) < 2:
        raise DegenerateInputError(
            "normalised entropy needs at least 2 rows and 2 features (it divides by log min(N, D))"
        )
    rank = _rank_from(torch.linalg.svdvals(z), (n, d), eps)
    if rank == 0:
        raise DegenerateInputError("spectral metrics of an all-zero matrix are undefined")
    kept = (weights > 0).sum(dim=1)  # (B,) rows each weighting keeps
    w = weights.to(torch.float64) * kept[:, None]  # (B, N), mean 1 over the rows kept
    gram = z @ z.T if n < d else None  # (N, N), shared by every reweighting
    # With N >= D, each reweighting's second moments zᵀ diag(w) z are one matrix product of the weights with
    # every row's outer product z_i z_iᵀ, of which only the lower triangle is formed (it is all eigvalsh
    # reads): half the work of a batched product, when those products fit in about 256 MiB.
    lower = torch.tril_indices(d, d) if gram is None and n * d * (d + 1) // 2 <= 2**25 else None
    outer = z[:, lower[0]] * z[:, lower[1]] if lower is not None else None  # (N, D(D+1)/2)

    def squared_singular_values(w: torch.Tensor) -> torch.Tensor:
        if gram is not None:
            root = w.sqrt()
            moments = root[:, :, None] * gram * root[:, None, :]  # (b, N, N)
        elif outer is not None and lower is not None:
            moments = torch.zeros(len(w), d, d, dtype=torch.float64)
            moments[:, lower[0], lower[1]] = w @ outer
        else:
            moments = (z.T[None] * w[:, None, :]) @ z  # (b, D, D), a batched matmul
        return torch.linalg.eigvalsh(moments).flip(-1).clamp_min(0)  # σ², descending

    # Reweightings in chunks of about 2**25 float64 entries (256 MiB) of intermediates: a 4096-wide model's
    # 200 resamples at once would need gigabytes.
    side = min(n, d)
    chunk = max(1, 2**25 // (side * max(n, d) + side * side))
    energy = torch.cat([squared_singular_values(w[start : start + chunk]) for start in range(0, len(w), chunk)])
    sigma = energy.sqrt()
    p = energy / energy.sum(-1, keepdim=True)
    positive = p > 0
    logs = torch.where(positive, p, torch.ones_like(p)).log()
    shannon = -(p * logs).sum(-1)
    if abs(alpha - 1.0) < 1e-12:
        entropy = shannon
    else:  # over the positive shares only, as ``matrix_entropy`` (0 ** 0 would count a zero as 1)
        powers = torch.where(positive, p, torch.ones_like(p)) ** alpha
        entropy = torch.log(torch.where(positive, powers, torch.zeros_like(p)).sum(-1)) / (1 - alpha)
    entropy = entropy.clamp_min(0) / math.log(2.0)
    sides = kept.clamp(max=d).to(torch.float64)  # min(n, D) of each weighting
    if normalize:
        if (sides < 2).any():
            raise DegenerateInputError("normalised entropy needs at least 2 rows kept (it divides by log min(n, D))")
        entropy = entropy / torch.log2(sides)
    ranks = kept.clamp(max=rank)
    return {
        "entropy": entropy,
        "effective_rank": shannon.exp(),
        "rank_deficiency": sides - ranks.to(torch.float64),
        "condition_number": sigma[:, 0] / sigma.gather(1, (ranks - 1)[:, None])[:, 0],
        "spectral_norm": sigma[:, 0],
    }
