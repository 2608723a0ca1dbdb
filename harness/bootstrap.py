"""Bundles of per-layer series for the claim predicates, and their bootstrap resamples.

Resampling draws probe samples with replacement (a seeded generator, so the
interval is reproducible). Pair metrics are recomputed from per-layer N × N
Gram matrices, which are built once per layer and indexed per resample; the
spectral metrics need one SVD per layer per resample and so use fewer resamples.
Weight change has no sampling variance and is carried over unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from harness import metrics
from harness.profile import PairProfile

SPECTRAL = ("dataset_entropy", "effective_rank", "condition_number", "spectral_norm")
NEEDS = {"C1": "pair", "C2": None, "C5": "pair", "C6": "spectral", "C7": "spectral"}


def bundle_of(profile: PairProfile) -> dict[str, pd.Series]:
    """The measured series of a pair profile, under the names the claims read."""
    bundle = {name: profile.pair[name] for name in profile.pair.columns}
    for model in ("base", "sft"):
        table = getattr(profile, model)
        bundle.update({f"{model}.{name}": table[name] for name in table.columns})
    for name in SPECTRAL:  # the size of a change, whichever its sign
        bundle[f"abs_delta_{name}"] = profile.pair[f"delta_{name}"].abs()
    return bundle


def _weighted_centered_inner(gram_a: np.ndarray, gram_b: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """⟨J A J, J B J⟩ over the resampled rows, for every row of ``shares`` (B, N) at once.

    With s the share of each sample in a resample, a = A s and m_a = sᵀ a, the
    centred inner product is sᵀ(A∘B)s − 2 Σ s_i a_i b_i + m_a m_b: the same number
    as indexing the Gram matrices by the drawn rows, without the copies.
    """
    a, b = shares @ gram_a, shares @ gram_b
    m_a, m_b = (shares * a).sum(1), (shares * b).sum(1)
    return ((shares @ (gram_a * gram_b)) * shares).sum(1) - 2 * (shares * a * b).sum(1) + m_a * m_b


class Resampler:
    """Resampled bundles of one pair profile, computed lazily and kept for every claim that needs them."""

    def __init__(self, profile: PairProfile, resamples: int, spectral_resamples: int, seed: int = 0):
        if profile.base_run is None or profile.sft_run is None:
            raise ValueError("bootstrapping needs the profile's captured runs")
        self.profile = profile
        self.layers = profile.pair.index.tolist()
        rng = np.random.default_rng(seed)
        n, n_tok = profile.base_run.n_samples, profile.base_run.token_samples
        self.rows = rng.integers(0, n, size=(resamples, n))
        self.token_rows = rng.integers(0, max(n_tok, 1), size=(resamples, n_tok))
        self.spectral_resamples = min(spectral_resamples, resamples)
        self._pair: list[dict] | None = None
        self._spectral: list[dict] | None = None

    def bundles(self, kind: str | None) -> list[dict[str, pd.Series]]:
        if kind is None:
            return []
        pair = self._pair_bundles()
        if kind == "pair":
            return pair
        spectral = self._spectral_bundles()
        return [{**pair[i], **spectral[i]} for i in range(self.spectral_resamples)]

    def _pair_bundles(self) -> list[dict]:
        if self._pair is not None:
            return self._pair
        base, sft = self.profile.base_run, self.profile.sft_run
        n = base.n_samples
        # A resample with replacement is a weighting of the samples by how often each was drawn.
        shares = np.stack([np.bincount(rows, minlength=n) for rows in self.rows]).astype(float) / n  # (B, N)
        values = {}
        for layer in self.layers:
            x = base.pooled(layer).double().numpy()
            y = sft.pooled(layer).double().numpy()
            cosines = metrics.row_cosines(torch.from_numpy(x), torch.from_numpy(y)).numpy()
            gram_x, gram_y, gram_d = x @ x.T, y @ y.T, (y - x) @ (y - x).T
            cross = _weighted_centered_inner(gram_x, gram_y, shares)
            norms = np.sqrt(_weighted_centered_inner(gram_x, gram_x, shares)
                            * _weighted_centered_inner(gram_y, gram_y, shares))
            values.setdefault("cka", []).append(np.clip(cross / norms, 0.0, 1.0))
            values.setdefault("cosine", []).append(shares @ cosines)
            values.setdefault("mean_shift", []).append(np.sqrt(np.maximum(((shares @ gram_d) * shares).sum(1), 0)))
        values = {name: np.stack(columns, axis=1) for name, columns in values.items()}  # (B, layers)
        probes = {model: self._probe_accuracy(getattr(self.profile, f"{model}_run")) for model in ("base", "sft")}
        weight_change = self.profile.pair["weight_change"]
        self._pair = [{**{name: pd.Series(v[r], index=self.layers) for name, v in values.items()},
                       "weight_change": weight_change,
                       **{f"{m}.probe_accuracy": pd.Series(p[r], index=self.layers) for m, p in probes.items()}}
                      for r in range(len(self.rows))]
        return self._pair

    def _probe_accuracy(self, run) -> np.ndarray:
        hits, counts = run.sample_metric("probe_hits"), run.sample_metric("probe_counts")
        if hits.shape[0] == 0:
            return np.full((len(self.rows), len(self.layers)), np.nan)
        return np.stack([hits[rows].sum(0) / counts[rows].sum(0) for rows in self.token_rows])

    def _spectral_bundles(self) -> list[dict]:
        if self._spectral is not None:
            return self._spectral
        count = self.spectral_resamples
        values = {(m, name): np.empty((count, len(self.layers))) for m in ("base", "sft") for name in SPECTRAL}
        options = self.profile.meta["options"]
        for model in ("base", "sft"):
            run = getattr(self.profile, f"{model}_run")
            for column, layer in enumerate(self.layers):
                pooled = run.pooled(layer)
                for r in range(count):
                    summary = metrics.spectral_summary(pooled[self.rows[r]], options["alpha"],
                                                       options["normalize_entropy"], options["sparsity_eps"])
                    summary["dataset_entropy"] = summary.pop("entropy")
                    for name in SPECTRAL:
                        values[(model, name)][r, column] = summary[name]
        self._spectral = []
        for r in range(count):
            bundle = {f"{m}.{name}": pd.Series(values[(m, name)][r], index=self.layers) for (m, name) in values}
            for name in SPECTRAL:
                bundle[f"delta_{name}"] = bundle[f"sft.{name}"] - bundle[f"base.{name}"]
                bundle[f"abs_delta_{name}"] = bundle[f"delta_{name}"].abs()
            self._spectral.append(bundle)
        return self._spectral
