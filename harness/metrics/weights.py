"""The arithmetic of eq. 1: the Frobenius norm of a weight change, summed over a layer's matrices.

Which matrices a layer has, and where a checkpoint keeps them, is ``harness.measure.weights``'s business
(through the family's layout); this module only adds squares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def squared_change(w_base: torch.Tensor, w_sft: torch.Tensor, block_elements: int = 1 << 21) -> tuple[float, float]:
    """‖W_s − W_b‖²_F and ‖W_b‖²_F in float64, a block of rows at a time: the float64 temporaries stay a few MB
    instead of several copies of the tensor (an MLP matrix of a 7B model is 45M values)."""
    a, b = w_base.reshape(w_base.shape[0], -1), w_sft.reshape(w_sft.shape[0], -1)
    rows = max(1, block_elements // max(1, a.shape[1]))
    change = size = 0.0
    for start in range(0, a.shape[0], rows):
        block_base = a[start : start + rows].to(torch.float64)
        change += float(((b[start : start + rows].to(torch.float64) - block_base) ** 2).sum())
        size += float((block_base**2).sum())
    return change, size


def layer_weight_change(
    squared: Mapping[int, float], base_squared: Mapping[int, float] | None = None
) -> dict[int, float]:
    """ΔW^(l) = sqrt(Σ_{W ∈ Θ^(l)} ‖W_s − W_b‖²_F) per layer (eq. 1), from each layer's summed squares; with
    ``base_squared`` (Σ ‖W_b‖²_F), relative to the base's own norm."""
    return {
        layer: math.sqrt(squared[layer] / (base_squared[layer] if base_squared is not None else 1.0))
        for layer in sorted(squared)
    }
