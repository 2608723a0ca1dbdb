"""The token-level metrics of token samples at every layer at once: their states stacked as
(samples, layers, T, D), right-padded to the longest sample, with each sample's length.

The same numbers as ``prompt_entropy`` (eq. 2), ``curvature`` (eq. 5) and
``sparsity`` (§3.3) applied sample by sample and layer by layer, from batched
operations: the profile computes them once per batch of its forward pass
instead of once per sample and layer, which on small models would cost more in
per-call overhead than in arithmetic. Padding rows are zero and never counted.
"""

from __future__ import annotations

import math

import torch

from harness.metrics._checks import DegenerateInputError, all_finite


def padded_stack(samples: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (layers, T_i, D) states as one float64 (samples, layers, T_max, D) stack, zero-padded, and
    the lengths T_i; refused when a value is not finite."""
    if not samples:
        raise DegenerateInputError("no token sample to stack")
    layers, width = samples[0].shape[0], samples[0].shape[2]
    lengths = torch.tensor([h.shape[1] for h in samples])
    stack = torch.zeros((len(samples), layers, int(lengths.max()), width), dtype=torch.float64)
    for index, h in enumerate(samples):
        if h.ndim != 3 or h.shape[0] != layers or h.shape[2] != width:
            raise DegenerateInputError(
                f"token sample {index} has shape {tuple(h.shape)}; expected ({layers}, T, {width})"
            )
        stack[index, :, : h.shape[1]] = h.detach()
    if not all_finite(stack):
        raise DegenerateInputError(
            f"the token samples hold {int((~torch.isfinite(stack)).sum())} NaN or infinite values"
        )
    return stack, lengths


def prompt_entropies(
    h: torch.Tensor, lengths: torch.Tensor, alpha: float = 1.0, normalize: bool = True
) -> torch.Tensor:
    """Prompt entropy S_p (eq. 2) of every sample at every layer: (samples, layers); NaN for a sample too short
    to have one (1 token when normalised). In bits, divided by log min(T_i, D) with ``normalize``."""
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    width = h.shape[3]
    # σ² are the eigenvalues of the smaller Gram matrix (T × T or D × D; zero rows add zero eigenvalues): a
    # symmetric eigensolver on it is several times faster than an SVD of h
    gram = h @ h.transpose(2, 3) if h.shape[2] <= width else h.transpose(2, 3) @ h
    energy = torch.linalg.eigvalsh(gram)  # (samples, layers, k), ascending
    # eigenvalues within the eigensolver's rounding of zero are zero (an SVD gives them ~σ_max·1e-16, whose
    # square no α-power can lift): without this, α < 1 would count rounding noise as spread energy
    noise = energy[..., -1:] * gram.shape[-1] * torch.finfo(torch.float64).eps * 10
    energy = torch.where(energy > noise, energy, 0.0)
    total = energy.sum(dim=2, keepdim=True)
    cap = torch.minimum(lengths, torch.tensor(width)).to(torch.float64)[:, None]  # min(T_i, D)
    too_short = (lengths < (2 if normalize else 1))[:, None].expand(-1, h.shape[1])
    if ((total[..., 0] <= 0) & ~too_short).any():
        raise DegenerateInputError("entropy of an all-zero matrix is undefined")
    p = energy / torch.where(total > 0, total, 1.0)
    if abs(alpha - 1.0) < 1e-12:
        entropy = -torch.special.xlogy(p, p).sum(dim=2)
    else:
        entropy = torch.log(torch.where(p > 0, p**alpha, 0.0).sum(dim=2)) / (1 - alpha)
    entropy = entropy.clamp(min=0.0) / math.log(2.0)
    if normalize:
        entropy = entropy / (torch.log(cap.clamp(min=2.0)) / math.log(2.0))
    return torch.where(too_short, torch.nan, entropy)


def curvatures(h: torch.Tensor, lengths: torch.Tensor, min_step_norm: float = 0.0) -> torch.Tensor:
    """Curvature C (eq. 5) of every sample's token path at every layer: (samples, layers); NaN for a sample of
    fewer than 3 tokens, or at a layer where every step between consecutive tokens has zero length."""
    steps = h[:, :, 1:] - h[:, :, :-1]
    norms = steps.norm(dim=3)
    positions = torch.arange(h.shape[2] - 2)
    real = (positions[None, :] + 2 < lengths[:, None])[:, None, :]  # tokens t, t+1, t+2 all real
    valid = real & (norms[:, :, :-1] > min_step_norm) & (norms[:, :, 1:] > min_step_norm)
    units = steps / torch.where(norms > 0, norms, 1.0)[..., None]
    a, b = units[:, :, :-1], units[:, :, 1:]
    angles = 2 * torch.atan2((a - b).norm(dim=3), (a + b).norm(dim=3))
    counts = valid.sum(dim=2)
    total = torch.where(valid, angles, 0.0).sum(dim=2)
    return torch.where(counts > 0, total / counts.clamp(min=1), torch.nan) / math.pi


def sparsities(h: torch.Tensor, lengths: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Share of entries with |h| < eps (§3.3) over each sample's real tokens, at every layer: (samples, layers)."""
    real = (torch.arange(h.shape[2])[None, :] < lengths[:, None])[:, None, :, None]
    small = ((h.abs() < eps) & real).sum(dim=(2, 3)).to(torch.float64)
    return small / (lengths[:, None].to(torch.float64) * h.shape[3])


def token_metrics(
    samples: list[torch.Tensor], alpha: float = 1.0, normalize: bool = True, sparsity_eps: float = 0.01
) -> dict[str, torch.Tensor]:
    """Every token-level metric of each sample's (layers, T_i, D) states, each (samples, layers)."""
    h, lengths = padded_stack(samples)
    return {
        "prompt_entropy": prompt_entropies(h, lengths, alpha, normalize),
        "curvature": curvatures(h, lengths),
        "token_sparsity": sparsities(h, lengths, sparsity_eps),
    }
