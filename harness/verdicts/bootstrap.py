"""Bundles of per-layer series for the claim predicates, and their Bayesian-bootstrap resamples.

A resample reweights the probe samples with Dirichlet(1, ..., 1) weights (a
seeded generator, so intervals are reproducible) instead of drawing rows with
replacement: a duplicated row lowers the rank of a representation matrix and so
biases every spectral metric, a weight does not. The same weights serve every
statistic of every claim (one joint resampling, so a claim's conditions stay
consistent). Pair metrics are recomputed from per-layer N × N Gram matrices,
built once per layer; spectral metrics from (D × D) weighted second moments, all
resamples of a layer at once. Weight change has no sampling variance and is
carried over unchanged.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness import cache, metrics
from harness.measure.profile import PairProfile
from harness.verdicts import intervals
from harness.verdicts.claims import Rows

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


def stored_bundles(layers: list[int], stored: dict[str, list]) -> list[dict[str, Rows]]:
    """The resampled bundles kept by ``Resampler.stored``, back as the claims read them."""
    arrays = {name: np.asarray(values, dtype=float) for name, values in stored.items()}
    count = min((len(values) for values in arrays.values()), default=0)
    return [{name: Rows(layers, values[r]) for name, values in arrays.items()} for r in range(count)]


def _weighted_centered_inner(gram_a: np.ndarray, gram_b: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """⟨J A J, J B J⟩ under sample weights, for every row of ``shares`` (B, N) at once.

    With s the weight of each sample (summing to 1), a = A s and m_a = sᵀ a, the
    weighted centred inner product is sᵀ(A∘B)s − 2 Σ s_i a_i b_i + m_a m_b; for
    the shares of rows drawn with replacement it equals indexing the Gram matrices
    by the drawn rows.
    """
    a, b = shares @ gram_a, shares @ gram_b
    m_a, m_b = (shares * a).sum(1), (shares * b).sum(1)
    return ((shares @ (gram_a * gram_b)) * shares).sum(1) - 2 * (shares * a * b).sum(1) + m_a * m_b


_RUN_SPECTRA: dict[tuple, dict[str, np.ndarray]] = {}  # resampled spectra per captured run (see _model_spectra)
_RUN_SPECTRA_KEPT = 16
SPECTRA_FORMAT = 1  # of the resampled spectra kept beside a captured run


def _spectra_file(key: tuple) -> str:
    """The name of a run's resampled spectra under ``key`` (its run directory aside)."""
    return f"resampled-spectra-{cache.stable_hash([SPECTRA_FORMAT, *key[1:], SPECTRAL])}.npz"


def _remember(key: tuple, values: dict[str, np.ndarray]) -> None:
    if len(_RUN_SPECTRA) >= _RUN_SPECTRA_KEPT:
        _RUN_SPECTRA.pop(next(iter(_RUN_SPECTRA)))
    _RUN_SPECTRA[key] = values


class Resampler:
    """Resampled bundles of one pair profile, computed lazily and kept for every claim that needs them."""

    def __init__(self, profile: PairProfile, resamples: int, seed: int = 0):
        if profile.base_run is None or profile.sft_run is None:
            raise ValueError("bootstrapping needs the profile's captured runs")
        if resamples < 1:
            raise ValueError("resamples must be at least 1")
        self.profile = profile
        self.layers = profile.pair.index.tolist()
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.base_run, self.sft_run = profile.base_run, profile.sft_run  # both captured (checked above)
        n, n_tok = profile.base_run.n_samples, profile.base_run.token_samples
        self.weights = intervals.dirichlet_weights(n, resamples, rng)  # (B, N)
        self.token_weights = intervals.dirichlet_weights(max(n_tok, 1), resamples, rng)  # (B, n_tok)
        self._pair: list[dict] | None = None
        self._spectral: list[dict] | None = None

    @property
    def note(self) -> str:
        return (
            f"percentile intervals over {len(self.weights)} Bayesian-bootstrap reweightings of the "
            f"{self.base_run.n_samples} probe samples"
        )

    def bundles(self, kind: str | None) -> list[dict[str, Rows | pd.Series]]:
        """Per resample, the series the claims of ``kind`` read ("pair" or "spectral"), as ``claims.Rows``."""
        if kind is None:
            return []
        pair = self._pair_bundles()
        if kind == "pair":
            return pair
        spectral = self._spectral_bundles()
        return [{**pair[i], **spectral[i]} for i in range(len(pair))]

    def stored(self) -> dict[str, list]:
        """Every resampled series computed so far, as (resamples, layers) nested lists: what a report keeps so
        that its verdicts can be recomputed under other thresholds without the models (``rescore``)."""
        computed = [bundles for bundles in (self._pair, self._spectral) if bundles is not None]
        return {
            name: np.stack([bundle[name].take(self.layers) for bundle in bundles]).tolist()
            for bundles in computed
            for name in bundles[0]
        }

    def _pair_bundles(self) -> list[dict]:
        if self._pair is not None:
            return self._pair
        base, sft = self.base_run, self.sft_run
        shares = self.weights
        columns_of: dict[str, list[np.ndarray]] = {}
        for layer in self.layers:
            x = base.pooled(layer).double().numpy()
            y = sft.pooled(layer).double().numpy()
            cosines = metrics.row_cosines(torch.from_numpy(x), torch.from_numpy(y)).numpy()
            gram_x, gram_y, gram_d = x @ x.T, y @ y.T, (y - x) @ (y - x).T
            cross = _weighted_centered_inner(gram_x, gram_y, shares)
            norms = np.sqrt(
                _weighted_centered_inner(gram_x, gram_x, shares) * _weighted_centered_inner(gram_y, gram_y, shares)
            )
            with np.errstate(invalid="ignore", divide="ignore"):
                columns_of.setdefault("cka", []).append(np.clip(cross / norms, 0.0, 1.0))
            columns_of.setdefault("cosine", []).append(shares @ cosines)
            columns_of.setdefault("mean_shift", []).append(np.sqrt(np.maximum(((shares @ gram_d) * shares).sum(1), 0)))
        values = {name: np.stack(columns, axis=1) for name, columns in columns_of.items()}  # (B, layers)
        probes = {model: self._probe_accuracy(getattr(self.profile, f"{model}_run")) for model in ("base", "sft")}
        weight_change = self.profile.pair["weight_change"]
        weight_change = Rows(weight_change.index.tolist(), weight_change.to_numpy(dtype=float))
        self._pair = [
            {
                **{name: Rows(self.layers, v[r]) for name, v in values.items()},
                "weight_change": weight_change,
                **{f"{m}.probe_accuracy": Rows(self.layers, p[r]) for m, p in probes.items()},
            }
            for r in range(len(self.weights))
        ]
        return self._pair

    def _probe_accuracy(self, run) -> np.ndarray:
        hits, counts = run.sample_metric("probe_hits"), run.sample_metric("probe_counts")  # (n_tok, layers)
        if hits.shape[0] == 0:
            return np.full((len(self.weights), len(self.layers)), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.token_weights @ hits) / (self.token_weights @ counts)

    def _model_spectra(self, run) -> dict[str, np.ndarray]:
        """(resamples, layers) spectral metrics of one model's run under this resampler's weights.

        A captured run is stored under a key of its weights, probe data and options, and the weights depend
        only on the seed and the sample count: the planted controls share their base model's run, whose
        resampled spectra are therefore computed once per process, and kept beside the run on disk, so that
        another process (a rerun, the report of the same pair) reads them back to the last bit.
        """
        options = self.profile.meta["options"]
        directory = getattr(run, "directory", None)
        key = (
            None
            if directory is None
            else (
                str(directory),
                self.seed,
                self.weights.shape,
                tuple(self.layers),
                options["alpha"],
                options["normalize_entropy"],
            )
        )
        if key in _RUN_SPECTRA:
            return _RUN_SPECTRA[key]
        stored = None if key is None or directory is None else Path(directory) / _spectra_file(key)
        if stored is not None and stored.is_file():
            try:
                with np.load(stored) as saved:
                    values = {name: saved[name] for name in SPECTRAL}
            except (OSError, ValueError, KeyError):  # unreadable: computed again and written anew below
                pass
            else:
                _remember(key, values)  # type: ignore[arg-type]  # a file was found: the key is set
                return values
        weights = torch.from_numpy(self.weights)
        values = {name: np.empty((len(self.weights), len(self.layers))) for name in SPECTRAL}
        for column, layer in enumerate(self.layers):
            spectra = metrics.weighted_spectra(
                run.pooled(layer), weights, options["alpha"], options["normalize_entropy"]
            )
            spectra["dataset_entropy"] = spectra.pop("entropy")
            for name in SPECTRAL:
                values[name][:, column] = spectra[name].numpy()
        if key is not None and stored is not None:
            _remember(key, values)
            buffer = io.BytesIO()
            np.savez(buffer, **values)
            cache.write_bytes_atomic(stored, buffer.getvalue())
        return values

    def _spectral_bundles(self) -> list[dict]:
        if self._spectral is not None:
            return self._spectral
        count = len(self.weights)
        values = {}
        for model in ("base", "sft"):
            spectra = self._model_spectra(getattr(self.profile, f"{model}_run"))
            values.update({(model, name): spectra[name] for name in SPECTRAL})
        for name in SPECTRAL:
            values[("delta", name)] = values[("sft", name)] - values[("base", name)]
            values[("abs_delta", name)] = np.abs(values[("delta", name)])
        self._spectral = [
            {
                f"{m}_{name}" if m.endswith("delta") else f"{m}.{name}": Rows(self.layers, v[r])
                for (m, name), v in values.items()
            }
            for r in range(count)
        ]
        return self._spectral
