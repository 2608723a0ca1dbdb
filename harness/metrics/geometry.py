"""Geometric metrics (§3.4): curvature of a token path, CKA, cosine similarity and mean shift."""

from __future__ import annotations

import math

import torch

from harness.metrics._checks import DegenerateInputError, as_matrix, same_shape


def curvature(h: torch.Tensor, min_step_norm: float = 0.0) -> float:
    """Curvature C_i (eq. 5) of one sample's token path h, shape (T, D).

    With v_t = h_t − h_{t−1}, the mean over consecutive pairs of the angle
    arccos(v_tᵀ v_{t+1} / ‖v_t‖‖v_{t+1}‖), divided by π: 0 for a straight path,
    1 for a full reversal at every step. Needs T ≥ 3. Pairs with a zero-length
    step have no angle and are left out; if none remain it is an error.
    """
    h = as_matrix(h, "curvature input", min_rows=3)
    steps = h[1:] - h[:-1]
    norms = steps.norm(dim=1)
    valid = (norms[:-1] > min_step_norm) & (norms[1:] > min_step_norm)
    if not valid.any():
        raise DegenerateInputError("curvature is undefined: every step between consecutive tokens has zero length")
    return float(_angles(steps[:-1][valid], steps[1:][valid]).mean() / math.pi)


def _angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between rows of a and b as 2·atan2(‖â − b̂‖, ‖â + b̂‖): exact near 0 and π, where arccos is not."""
    a_unit = a / a.norm(dim=1, keepdim=True)
    b_unit = b / b.norm(dim=1, keepdim=True)
    return 2 * torch.atan2((a_unit - b_unit).norm(dim=1), (a_unit + b_unit).norm(dim=1))


def _centered(z: torch.Tensor) -> torch.Tensor:
    return z - z.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor, center: bool = True) -> float:
    """Linear CKA (eq. 6) between two representations of the same N samples, shapes (N, D_x), (N, D_y).

    ⟨K̃_x, K̃_y⟩_F / (‖K̃_x‖_F ‖K̃_y‖_F) with K = Z Zᵀ and K̃ = J K J. Computed
    in feature space, ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) after centring the rows,
    which is the same number. ``center=False`` drops J (uncentred alignment).
    """
    x = as_matrix(x, "CKA x", min_rows=2)
    y = as_matrix(y, "CKA y", min_rows=2)
    if x.shape[0] != y.shape[0]:
        raise DegenerateInputError(f"CKA needs the same samples on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    if center:
        x, y = _centered(x), _centered(y)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        cross, norm_x, norm_y = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross = (y.T @ x).norm() ** 2
        norm_x, norm_y = (x.T @ x).norm(), (y.T @ y).norm()
    if norm_x == 0 or norm_y == 0:
        raise DegenerateInputError("CKA is undefined when one side has no variance across samples")
    return float((cross / (norm_x * norm_y)).clamp(0.0, 1.0))


def row_cosines(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine of each row of x with the same row of y, shape (N,)."""
    x, y = as_matrix(x, "cosine x"), as_matrix(y, "cosine y")
    same_shape(x, y)
    norms = x.norm(dim=1) * y.norm(dim=1)
    if (norms == 0).any():
        raise DegenerateInputError(f"cosine is undefined for {int((norms == 0).sum())} zero rows")
    return ((x * y).sum(dim=1) / norms).clamp(-1.0, 1.0)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> float:
    """S_cos (eq. 7): mean over the N samples of the cosine between their base and SFT vectors."""
    return float(row_cosines(x, y).mean())


def mean_shift(x: torch.Tensor, y: torch.Tensor) -> float:
    """D_SFT (§3.4): Euclidean distance between the centroids of x and y."""
    x, y = as_matrix(x, "mean shift x"), as_matrix(y, "mean shift y")
    if x.shape[1] != y.shape[1]:
        raise DegenerateInputError(f"mean shift needs equal widths: {x.shape[1]} vs {y.shape[1]}")
    return float((y.mean(dim=0) - x.mean(dim=0)).norm())
