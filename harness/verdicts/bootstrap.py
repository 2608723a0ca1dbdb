"""Bundles of per-layer series for the claim predicates, their estimates and their jackknife replicates.

What each series estimates (docs/statistics.md):

- ``cka``: the population linear CKA of the two models' pooled states, by the debiased estimator (unbiased
  HSIC, ``metrics.unbiased``), valid at any N against the width D; the plug-in of eq. 6 (the paper's) stays
  in the profile tables and beside every condition;
- ``mean_shift``: ‖μ_SFT − μ_base‖ (§3.4) by the unbiased U-statistic of its square, without the plug-in's
  noise floor tr(Σ_d)/N;
- ``cosine``: the population mean of the per-sample cosine, by the sample mean;
- spectral metrics (effective rank, entropy, condition number, spectral norm): the paper defines them on the
  N-sample matrix (§3.3, normalised by log N), so they estimate the value of a probe of N samples; at N < D
  that value depends on N, and pairs are compared at the same N;
- logit-lens accuracy: the population accuracy, by the sample proportion; weight change: exact.

Intervals: a delete-a-group jackknife over the probe samples (``intervals.jackknife_weights``, a seeded
partition into G groups). Replicate g recomputes every series without group g; the same replicates serve
every statistic of every claim (one joint replication, so a claim's conditions stay consistent), and the two
models of a pair lose the same samples (paired). A zero weight leaves its sample out of every weighted
statistic, so the spectral metrics of all replicates of a layer come from one batched eigen-decomposition.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness import cache, metrics
from harness.measure.profile import PairProfile
from harness.metrics import unbiased
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


ESTIMATED = ("cka", "mean_shift")  # series whose verdict estimate is not the profile's plug-in value

_RUN_SPECTRA: dict[tuple, dict[str, np.ndarray]] = {}  # replicated spectra per captured run (see _model_spectra)
_RUN_SPECTRA_KEPT = 16
SPECTRA_FORMAT = 2  # of the replicated spectra kept beside a captured run (2: jackknife replicates)


def _spectra_file(key: tuple) -> str:
    """The name of a run's resampled spectra under ``key`` (its run directory aside)."""
    return f"resampled-spectra-{cache.stable_hash([SPECTRA_FORMAT, *key[1:], SPECTRAL])}.npz"


def _remember(key: tuple, values: dict[str, np.ndarray]) -> None:
    if len(_RUN_SPECTRA) >= _RUN_SPECTRA_KEPT:
        _RUN_SPECTRA.pop(next(iter(_RUN_SPECTRA)))
    _RUN_SPECTRA[key] = values


class Resampler:
    """Jackknife replicates and estimates of one pair profile, computed lazily and kept for every claim."""

    method = "jackknife"

    def __init__(self, profile: PairProfile, groups: int, seed: int = 0):
        if profile.base_run is None or profile.sft_run is None:
            raise ValueError("replicating needs the profile's captured runs")
        if groups < 2:
            raise ValueError("a jackknife needs at least 2 groups")
        self.profile = profile
        self.layers = profile.pair.index.tolist()
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.base_run, self.sft_run = profile.base_run, profile.sft_run  # both captured (checked above)
        n, n_tok = profile.base_run.n_samples, profile.base_run.token_samples
        # The token-level samples are the first of the pooled ones, and replicate g leaves out the same samples
        # of both, so every group holds some of them: at most as many groups as token-level samples. Fewer than
        # two token-level samples give no replicates: NaN weights make every token-level interval undefined.
        groups = min(groups, n, n_tok) if n_tok >= 2 else min(groups, n)
        membership = intervals.jackknife_groups(n, groups, rng, leading=n_tok)
        self.weights = intervals.weights_of(membership, groups)  # (G, N)
        self.token_weights = (
            intervals.weights_of(membership[:n_tok], groups) if n_tok >= 2 else np.full((groups, max(n_tok, 1)), np.nan)
        )
        self._pair: list[dict] | None = None
        self._estimates: dict[str, pd.Series] = {}
        self._spectral: list[dict] | None = None

    @property
    def note(self) -> str:
        return (
            f"jackknife intervals (estimate ± t_{len(self.weights) - 1} standard errors) over "
            f"{len(self.weights)} groups of the {self.base_run.n_samples} probe samples"
        )

    def estimator(self, kind: str | None) -> str:
        """What a claim reading the series of ``kind`` is estimated with, for its report."""
        parts = {
            "pair": "CKA: debiased (unbiased HSIC, Song et al. 2012); mean shift: unbiased U-statistic of its "
            "square; cosine and logit-lens accuracy: sample means",
            "spectral": "spectral metrics: the N-sample matrix's own (§3.3), SFT and base on the same samples",
        }
        named = [parts["pair"]] if kind in ("pair", "spectral") else []
        named += [parts["spectral"]] if kind == "spectral" else []
        return "; ".join([*named, self.note]) if named else "exact (no sampling variance)"

    def bundles(self, kind: str | None) -> list[dict[str, Rows | pd.Series]]:
        """Per replicate, the series the claims of ``kind`` read ("pair" or "spectral"), as ``claims.Rows``."""
        if kind is None:
            return []
        pair = self._pair_bundles()
        if kind == "pair":
            return pair
        spectral = self._spectral_bundles()
        return [{**pair[i], **spectral[i]} for i in range(len(pair))]

    def estimates(self) -> dict[str, pd.Series]:
        """The full-sample estimates of the series in ``ESTIMATED`` (debiased), which replace the profile's
        plug-in values in the bundle the verdicts read."""
        self._pair_bundles()
        return dict(self._estimates)

    def point_bundle(self, bundle: dict[str, pd.Series]) -> dict[str, pd.Series]:
        """``bundle`` (the profile's plug-in series, ``bundle_of``) with the estimated series in their place."""
        return {**bundle, **self.estimates()}

    def band(self, kind: str, column: str, point, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The pointwise jackknife interval (low, high per layer) of series ``column`` about ``point``, as a
        verdict takes each condition's (for the figures' bands)."""
        replicates = np.stack([bundle[column].values for bundle in self.bundles(kind)])  # (G, layers)
        point = np.asarray(point, dtype=float)
        bounds = np.array(
            [intervals.jackknife_interval(point[j], replicates[:, j], confidence) for j in range(len(point))]
        )
        return bounds[:, 0], bounds[:, 1]

    def stored(self) -> dict[str, list]:
        """Every replicated series computed so far, as (replicates, layers) nested lists: what a report keeps so
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
        points: dict[str, list[float]] = {name: [] for name in ESTIMATED}
        for layer in self.layers:
            x, y = base.pooled(layer).double(), sft.pooled(layer).double()
            cosines = metrics.row_cosines(x, y).numpy()
            for name, estimate in (("cka", unbiased.debiased_cka_kept), ("mean_shift", unbiased.debiased_shift_kept)):
                point, replicates = estimate(x, y, shares)
                points[name].append(point)
                columns_of.setdefault(name, []).append(replicates)
            columns_of.setdefault("cosine", []).append(shares @ cosines)
        values = {name: np.stack(columns, axis=1) for name, columns in columns_of.items()}  # (G, layers)
        self._estimates = {name: pd.Series(v, index=self.layers, dtype=float, name=name) for name, v in points.items()}
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
