"""The paper's metrics as pure functions of tensors (the public API is this module's names)."""

from harness.metrics._checks import DegenerateInputError
from harness.metrics.geometry import cosine_similarity, curvature, linear_cka, mean_shift, row_cosines
from harness.metrics.spectrum import (
    condition_number,
    dataset_entropy,
    effective_rank,
    matrix_entropy,
    numerical_rank,
    prompt_entropy,
    rank_deficiency,
    sparsity,
    spectra_of_singular_values,
    spectral_norm,
    spectral_summary,
    summary_of_singular_values,
    weighted_spectra,
)
from harness.metrics.token_layers import curvatures, prompt_entropies, sparsities, token_metrics
from harness.metrics.weights import layer_weight_change, squared_change

__all__ = [
    "DegenerateInputError",
    "condition_number",
    "layer_weight_change",
    "squared_change",
    "cosine_similarity",
    "curvature",
    "curvatures",
    "dataset_entropy",
    "effective_rank",
    "linear_cka",
    "matrix_entropy",
    "mean_shift",
    "numerical_rank",
    "prompt_entropies",
    "prompt_entropy",
    "rank_deficiency",
    "row_cosines",
    "sparsities",
    "sparsity",
    "token_metrics",
    "spectral_norm",
    "spectra_of_singular_values",
    "spectral_summary",
    "summary_of_singular_values",
    "weighted_spectra",
]
