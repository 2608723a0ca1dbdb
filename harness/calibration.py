"""Calibration of the verdicts, measured: how often each claim "holds" where nothing is there, and how often
it holds at the paper's own effect sizes.

A verdict holds only when the whole interval of every deciding condition clears its threshold, so on data
with no effect it should hold rarely: at most as often as the intervals' coverage allows (about 2.5% for
one condition at its boundary with 95% intervals, less for conjunctions). Whether it does is a property of
the whole engine (the statistics, the picks of best arms, the jackknife and the bootstrap, the widening for few
seeds), so simulated data go through the same code as real data:

- per-layer claims (C1, C2, C5, C6, C7, §4.2-4.3): a pair of in-memory runs (``SyntheticRun``, read like a
  ``profile.ModelRun``), tabled by ``profile.intrinsic_table`` and ``profile.pair_table``, resampled by
  ``bootstrap.Resampler`` and judged by ``verification.Measured``;
- the layer swap (C3, §4.3, Fig. 6): a swap result of per-item answer log-likelihoods, judged by
  ``verification.swap_verdict``;
- the LoRA study (C4, C4:M5, the referee's control, C8; §4.4, App. A-B): a ``harness.lora.study.LoraStudy`` whose
  runs are drawn per seed (a random offset per arm and seed) and per item (binary outcomes, correlated
  across arms through a shared item difficulty), judged by ``LoraStudy.verdict``.

Scenarios per family: ``null`` (no effect: per-layer series without a depth trend, arms exchangeable
across positions), ``boundary`` (the effect exactly at a threshold, where 95% intervals should let at
most ~2.5% through) and ``paper`` (the paper's effect sizes: the power). Every simulation is seeded from
(seed, family, scenario, index), so a rate does not depend on how the simulations are split over workers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats

from harness import config, depth, metrics, verification
from harness.lora import plan as study_plan
from harness.lora import runs as lora_runs
from harness.lora import study as lora_study
from harness.measure import profile
from harness.verdicts import bootstrap, claims, directional, registry

PER_LAYER = ("C1", "C2", "C5", "C6", "C7")
LORA = ("C4", "C4:M5", "C4-control", "C8")
DIRECTIONAL = tuple(directional.HYPOTHESES)  # §3.3-3.4: the paper gives directions, not effect sizes (no power)
POWER_KEYS = ("C1", "C2", "C3", "C4", "C4:M5", "C4-control", "C5", "C6", "C7", "C8")
CLAIM_KEYS = (*POWER_KEYS, *DIRECTIONAL)
FAMILIES = {"layers": PER_LAYER, "swap": ("C3",), "lora": LORA, "directional": DIRECTIONAL}
SWAP_SEGMENTS = 5  # the M of the C3 verdict that is calibrated (Fig. 6 swaps 20% blocks)
NULL_LIMIT = 0.05  # the largest acceptable rate of "holds" on data with no effect


@dataclass(frozen=True)
class Sizes:
    """How large each simulated data set is. Small by default (a test on two cores); the paper's sizes give
    the power at the paper's effect sizes."""

    layers: int = 10  # decoder layers (profile rows 0..L)
    samples: int = 40  # pooled probe samples (§4.1: 1,000)
    width: int = 8  # hidden size
    token_samples: int = 20  # samples with token-level metrics (§4.1: 100)
    swap_items: int = 100  # problems scored per swap (C3.items)
    items: int = 60  # task items scored per LoRA arm and seed (GSM8K test: 1,319)
    texts: int = 20  # retention texts per set (tuning.retention_samples: 100)
    seeds: int = 3  # training seeds per LoRA arm (§4.4 reports one run; the harness trains 3)

    def scaled(self, **changes) -> Sizes:
        return dataclasses.replace(self, **changes)


SMALL = Sizes()
NIGHTLY = Sizes(layers=16, samples=100, width=16, token_samples=50, swap_items=200, items=200, texts=50)
PAPER = Sizes(layers=16, samples=1000, width=16, token_samples=100, swap_items=100, items=1319, texts=100)
# §4.1's 1,000 pooled probe samples with more hidden dimensions than samples: where the boundary designs of the
# claims that read no spectral series are simulated at night, at 16, 32 and 64 layers (``real_size_batches``)
REAL = Sizes(layers=16, samples=1000, width=1024, token_samples=100)


# --- per-layer claims: a simulated pair of runs --------------------------------------------------


@dataclass
class SyntheticRun:
    """A captured run held in memory, read like ``profile.ModelRun``: pooled states per profile row and the
    per-sample logit-lens hits and counts of the token-level samples."""

    label: str
    states: list[np.ndarray]  # per row: (N, D) float32
    hits: np.ndarray  # (token_samples, rows)
    counts: np.ndarray  # (token_samples, rows)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)  # token-level metrics, (token_samples, rows)

    @property
    def n_samples(self) -> int:
        return self.states[0].shape[0]

    @property
    def n_layers(self) -> int:
        return len(self.states)

    @property
    def token_samples(self) -> int:
        return self.hits.shape[0]

    def pooled(self, layer: int) -> torch.Tensor:
        return torch.from_numpy(self.states[layer])

    def sample_metric(self, name: str) -> np.ndarray:
        if name == "probe_hits":
            return self.hits
        if name == "probe_counts":
            return self.counts
        return self.per_sample.get(name, np.full(self.hits.shape, np.nan))  # not simulated: undefined


@dataclass(frozen=True)
class LayerPlan:
    """Population values per profile row 0..L of a simulated pair: what the per-layer claims look for.

    The base states of row r are μ + Z_r diag(√λ_r); the SFT states add σ_r E_r diag(√λ_r) (σ_r set so that
    the population CKA is ``cka[r]``) and a centroid shift of norm ``shift[r]`` along the widest direction.
    Z and E follow a stationary AR(1) over depth (the residual stream keeps most of a layer's state), so
    neighbouring layers' statistics are correlated as in a real model. Logit-lens accuracy is ``probe[r]``
    for both models; weight change (rows 1..L) is log-normal about ``weight[r - 1]``, independent across
    layers.
    """

    cka: np.ndarray  # (rows,)
    shift: np.ndarray  # (rows,)
    probe: np.ndarray  # (rows,)
    spectrum: np.ndarray  # (rows, D) eigenvalues of the base covariance
    weight: np.ndarray  # (L,) mean weight change per decoder layer
    weight_spread: float = 0.3  # log-normal σ of the weight change around its mean
    depth_correlation: float = 0.9
    offset: float = 3.0  # norm of the common mean over the root total variance: cosines near 1, as in LMs
    probe_concentration: float = 20.0  # Beta concentration of per-sample accuracy
    keep_spread: bool = False  # rescale the SFT's spread to the base's, so its second moment is the base's
    sample_metrics: tuple[str, ...] = ()  # token-level metrics simulated per sample (``sample_metric_values``)
    sample_shift: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> SFT − base per row (population)
    # the common mean: a fixed unit direction (else a random one per simulation) and a multiplier per row (else 1)
    mean_direction: np.ndarray | None = None
    mean_scale: np.ndarray | None = None
    # the SFT's own spread per row (else the base's ``spectrum``) and a multiplier of its whole state per row (else 1)
    sft_spectrum: np.ndarray | None = None
    sft_scale: np.ndarray | None = None


def _common_mean(plan: LayerPlan, direction: np.ndarray) -> np.ndarray:
    """The mean both models share: ``direction`` scaled to ``plan.offset`` times the middle row's root total
    variance (cosines near 1, as in language models)."""
    direction *= plan.offset * math.sqrt(plan.spectrum[len(plan.cka) // 2].sum()) / np.linalg.norm(direction)
    return direction


def _row_states(
    plan: LayerPlan, row: int, mean: np.ndarray, z: np.ndarray, e: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(base, SFT) states of ``row`` from standard normals ``z`` and ``e`` (samples, D): ``_base_states`` and
    ``_sft_states``."""
    return _base_states(plan, row, mean, z), _sft_states(plan, row, mean, z, e)


def _base_states(plan: LayerPlan, row: int, mean: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The base's states of ``row``: the common mean (times the row's ``mean_scale``) plus z·√λ."""
    scale = 1.0 if plan.mean_scale is None else plan.mean_scale[row]
    return scale * mean + z * np.sqrt(plan.spectrum[row])


def _sft_states(plan: LayerPlan, row: int, mean: np.ndarray, z: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The SFT's states of ``row``: the base's noise ``z`` plus σ·e, times √λ (σ from the row's CKA; its own λ
    where ``sft_spectrum`` is set), its centroid moved by ``shift[row]`` along the widest direction, all
    multiplied by the row's ``sft_scale``."""
    scale = 1.0 if plan.mean_scale is None else plan.mean_scale[row]
    spread = np.sqrt(plan.spectrum[row] if plan.sft_spectrum is None else plan.sft_spectrum[row])
    sigma = sft_noise_scale(plan.cka[row])
    moved = (z + sigma * e) / (math.sqrt(1 + sigma**2) if plan.keep_spread else 1.0)
    y = scale * mean + moved * spread
    y[..., 0] += plan.shift[row]
    if plan.sft_scale is not None:
        y *= plan.sft_scale[row]
    return y


def sft_noise_scale(cka: float) -> float:
    """σ with CKA(X, X + σ E Σ^½) = ``cka`` in the population (E white): the SFT perturbation is the same
    share of every direction's spread, so CKA = 1 / (1 + σ²) whatever the spectrum."""
    if not 0 < cka <= 1:
        raise ValueError(f"population CKA must lie in (0, 1], got {cka}")
    return math.sqrt(1 / cka - 1)


def _depth_process(rng: np.random.Generator, rows: int, shape: tuple[int, int], rho: float) -> list[np.ndarray]:
    """Standard-normal matrices per row, AR(1) over depth with correlation ``rho`` (stationary)."""
    current = rng.standard_normal(shape)
    out = [current]
    for _ in range(rows - 1):
        current = rho * current + math.sqrt(1 - rho**2) * rng.standard_normal(shape)
        out.append(current)
    return out


def _probe_counts(
    rng: np.random.Generator, rates: np.ndarray, samples: int, concentration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Hits and counts per token-level sample and row: a sample's accuracy is Beta with mean ``rates[r]``
    at the same quantile at every row (a hard sample is hard at every depth)."""
    counts = np.repeat(rng.integers(40, 160, samples)[:, None].astype(float), len(rates), axis=1)
    quantile = rng.uniform(size=(samples, 1))
    p = np.clip(rates, 1e-6, 1 - 1e-6)
    accuracy = stats.beta.ppf(quantile, p * concentration, (1 - p) * concentration)
    return rng.binomial(counts.astype(int), accuracy).astype(float), counts


def simulated_pair(
    plan: LayerPlan, sizes: Sizes, rng: np.random.Generator, spectral: bool = True
) -> profile.PairProfile:
    """A pair profile of simulated runs, its tables built by ``profile.intrinsic_table`` and ``pair_table``
    (``spectral=False``: without the spectral metrics, which the claims of the pair series never read)."""
    rows, n, d = len(plan.cka), sizes.samples, plan.spectrum.shape[1]
    mean = _common_mean(plan, rng.standard_normal(d) if plan.mean_direction is None else plan.mean_direction.copy())
    z = _depth_process(rng, rows, (n, d), plan.depth_correlation)
    e = _depth_process(rng, rows, (n, d), plan.depth_correlation)
    base, sft = [], []
    for r in range(rows):
        x, y = _row_states(plan, r, mean, z[r], e[r])
        base.append(x.astype(np.float32))
        sft.append(y.astype(np.float32))
    per_sample = sample_metric_values(rng, plan.sample_metrics, sizes.token_samples, rows)
    for metric, shift in plan.sample_shift.items():
        per_sample["sft"][metric] = per_sample["sft"][metric] + shift
    runs = {
        label: SyntheticRun(
            label,
            states,
            *_probe_counts(rng, plan.probe, sizes.token_samples, plan.probe_concentration),
            per_sample[label],
        )
        for label, states in (("base", base), ("sft", sft))
    }
    spread = plan.weight_spread
    weights = plan.weight * np.exp(spread * rng.standard_normal(len(plan.weight)) - spread**2 / 2)
    options = profile.ProfileOptions(pooled_samples=n, token_samples=sizes.token_samples)
    tables = {label: profile.intrinsic_table(run, options, spectral) for label, run in runs.items()}
    pair = profile.pair_table(
        runs["base"],
        runs["sft"],
        tables["base"],
        tables["sft"],
        {depth.row_of_layer(layer): float(w) for layer, w in enumerate(weights)},
        options,
    )
    return profile.PairProfile(
        tables["base"], tables["sft"], pair, {"options": dataclasses.asdict(options)}, runs["base"], runs["sft"]
    )


# Per-sample token-level metrics of the directional null: a sample's level (shared by both models: a long,
# repetitive prompt has low entropy in either) plus each model's own noise, AR(1) over depth like the states.
SAMPLE_METRIC_LEVELS = {"prompt_entropy": (0.6, 0.1), "curvature": (0.55, 0.05), "token_sparsity": (0.02, 0.005)}


def sample_metric_values(
    rng: np.random.Generator, names: Sequence[str], samples: int, rows: int
) -> dict[str, dict[str, np.ndarray]]:
    """Per model, (samples, rows) values of each metric in ``names``, identically distributed for base and SFT
    (no effect): level + sd · (√½ · shared sample effect + √½ · the model's own noise)."""
    out: dict[str, dict[str, np.ndarray]] = {"base": {}, "sft": {}}
    for name in names:
        level, sd = SAMPLE_METRIC_LEVELS[name]
        shared = np.stack(_depth_process(rng, rows, (samples,), 0.9), axis=1)
        for label in out:
            own = np.stack(_depth_process(rng, rows, (samples,), 0.9), axis=1)
            out[label][name] = level + sd * math.sqrt(0.5) * (shared + own)
    return out


def _spectrum(rows: int, width: int, decay: float = 0.75) -> np.ndarray:
    """The same anisotropic spectrum at every row (λ_k = decay^k): no depth trend in any intrinsic metric."""
    return np.tile(decay ** np.arange(width, dtype=float), (rows, 1))


def _tail_rows(layers: int) -> list[int]:
    return claims.tail_split(list(range(layers + 1)), layers)[1]


def layer_plan(scenario: str, sizes: Sizes, thresholds: dict | None = None) -> LayerPlan:
    """The population of one per-layer scenario.

    - ``null``: every row alike: CKA 0.985, no centroid shift, accuracy 0.02, one spectrum, weight change
      iid around 0.05 (no depth trend anywhere), the SFT's spread rescaled to the base's and per-sample
      token metrics drawn alike for both models (no directional change either).
    - ``paper``: the paper's figures: CKA 0.99 on the plateau dropping to 0.94 at the last layer and the
      centroid shift below 1 then above 12 in the tail (§4.2, Fig. 1); accuracy 0.02 rising to 0.65 (§4.3,
      Fig. 3); weight change 0.05 early climbing to 0.12 at the last layer (§4.3, Fig. 4); a transition from
      the embeddings, then a plateau, then one direction taking over the tail, so that effective rank
      collapses and the spectral norm explodes at the last layer (§4.2, Fig. 2).
    - ``boundary:<condition>``: one condition exactly at its threshold, the others comfortably met
      (``boundary_plan``).
    - ``paper:r_weight_change_cosine``: C7 with exactly Fig. 5's r = −0.79 planted (``correlation_plan``), for
      its power: the ``paper`` scenario's correlation is stronger than the paper's.
    """
    layers, width = sizes.layers, sizes.width
    rows = layers + 1
    tail = _tail_rows(layers)
    cka, shift, probe = np.full(rows, 0.985), np.full(rows, 0.5), np.full(rows, 0.02)
    spectrum, weight = _spectrum(rows, width), np.full(layers, 0.05)
    if scenario in ("null", "directional_null"):
        # no depth trend anywhere, and an SFT with the base's population spectrum, centroid and token metrics,
        # so one simulated pair is a null for the per-layer claims and the directional hypotheses alike
        return LayerPlan(
            cka, np.zeros(rows), probe, spectrum, weight, keep_spread=True, sample_metrics=tuple(SAMPLE_METRIC_LEVELS)
        )
    if scenario.startswith("boundary:"):
        return boundary_plan(scenario.removeprefix("boundary:"), sizes, thresholds)
    if scenario == PAPER_CORRELATION:
        return correlation_plan(sizes, C7_PAPER_R)
    if scenario == "paper":
        cka[:] = 0.99
        cka[tail] = np.linspace(0.97, 0.94, len(tail))
        shift[tail] = np.linspace(6.0, 15.0, len(tail))
        probe[tail] = np.linspace(0.35, 0.65, len(tail))
        depth = (np.arange(1, layers + 1) - 0.5) / layers
        weight = 0.05 + 0.07 * (np.clip(depth - 0.5, 0, None) / (depth[-1] - 0.5)) ** 2
        spectrum = _spectrum(rows, width, decay=0.85)  # a high-rank plateau
        spectrum[0] = np.full(width, spectrum[1].mean() / 4)  # embeddings: small and isotropic
        spectrum[tail, 0] *= np.linspace(100.0, 500.0, len(tail))  # one direction takes over the tail
        return LayerPlan(cka, shift, probe, spectrum, weight, weight_spread=0.05, offset=0.5)
    known = ", ".join(["null", "paper", *(f"boundary:{name}" for name in BOUNDARIES)])
    raise KeyError(f"unknown per-layer scenario {scenario!r}; known: {known}")


def _comfortable(sizes: Sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], list[int]]:
    """(CKA, mean shift, accuracy per row, head rows, tail rows) where every C1 and C5 condition is met far
    beyond its threshold: a CKA plateau at 0.995 falling to 0.90 at the last row, a mean shift of 0.5 rising to
    15 (30 times the plateau's), accuracy 0.02 rising to 0.80. A boundary design moves one of them to its
    threshold."""
    rows = sizes.layers + 1
    head, tail = claims.tail_split(list(range(rows)), sizes.layers)
    cka, shift, probe = np.full(rows, 0.995), np.full(rows, 0.5), np.full(rows, 0.02)
    cka[tail] = np.linspace(0.97, 0.90, len(tail))
    shift[tail] = np.linspace(8.0, 15.0, len(tail))
    probe[tail] = np.linspace(0.6, 0.8, len(tail))
    return cka, shift, probe, head, tail


def boundary_plan(condition: str, sizes: Sizes, thresholds: dict | None = None) -> LayerPlan:
    """The population with ``condition`` exactly at its threshold (in ``thresholds``, the calibration's by
    default) and every other condition of its claim comfortably met (``_comfortable``): where 95% intervals
    may let it hold in at most 2.5% of the simulations (``BOUNDARIES`` says how each is set)."""
    t = thresholds or config.thresholds_for("calibration")
    cka, shift, probe, head, tail = _comfortable(sizes)
    middle = head[len(head) // 2]
    if condition == "cka_plateau_min":
        cka[middle] = t["C1"]["cka_plateau_min"]
    elif condition == "cka_drop":
        cka[tail] = np.linspace(0.98, 0.97, len(tail))
        cka[-1] = cka[head].mean() - t["C1"]["cka_drop_min"]
    elif condition == "mean_shift_spike_ratio":
        shift[tail] = np.linspace(1.0, np.median(shift[head]) * t["C1"]["mean_shift_spike_ratio"], len(tail))
    elif condition == "dormant_max":
        probe[middle] = t["C5"]["dormant_max"]
    elif condition == "tail_rise":
        probe[tail] = probe[head].max() + t["C5"]["rise_min"]
    elif condition == "directional_sample":
        return _directional_sample_plan(sizes, t)
    elif condition in ("cosine_drop", "cosine_tail_below_plateau"):
        return _cosine_plan(condition, sizes, float(t["C1"]["cosine_drop_min"]))
    elif condition == "r_weight_change_cosine":
        return correlation_plan(sizes, float(t["C7"]["cosine_r_max"]))
    elif condition == "r_weight_change_spectral":
        return spectral_correlation_plan(sizes, float(t["C7"]["spectral_r_min"]))
    elif condition in STAGE_CONDITIONS:
        c = t["C6"]
        limits = (c["transition_ratio_min"], c["collapse_ratio_max"], c["explode_ratio_min"], c["track_pearson_min"])
        return stages_plan(condition, sizes, *map(float, limits))
    elif condition.startswith("directional_") and condition.removeprefix("directional_") in DATASET_METRICS:
        metric = condition.removeprefix("directional_")
        margins = t["directional"]
        return _directional_dataset_plan(
            metric, sizes, float(margins["margin"]), float(margins["relative_margin"][metric])
        )
    else:
        raise KeyError(f"no boundary design for {condition!r}; known: {', '.join(BOUNDARIES)}")
    return LayerPlan(cka, shift, probe, _spectrum(sizes.layers + 1, sizes.width), np.full(sizes.layers, 0.05))


# SFT's direction per sample-level hypothesis (§3.3-3.4): -1 lowers the metric, +1 raises it
SAMPLE_DIRECTIONS = {"prompt_entropy": -1.0, "curvature": -1.0, "token_sparsity": 1.0}
COMFORTABLE_MARGINS = 20.0  # a band comfortably beyond its smallest change of interest: this many times it


def _directional_sample_plan(sizes: Sizes, t: dict) -> LayerPlan:
    """The directional null with the sample-level hypotheses' middle band exactly at its smallest change of
    interest (``directional.relative_margin`` of the metric's level, in the claimed direction) and the first
    and last bands 20 times beyond it."""
    rows = sizes.layers + 1
    null = layer_plan("directional_null", sizes)
    bands = {band: [depth.row_of_layer(i) for i in layers] for band, layers in depth.layer_groups(sizes.layers).items()}
    shifts = {}
    for metric, sign in SAMPLE_DIRECTIONS.items():
        level, _ = SAMPLE_METRIC_LEVELS[metric]
        smallest = t["directional"]["margin"] + t["directional"]["relative_margin"][metric] * level
        shift = np.zeros(rows)
        shift[bands["middle"]] = sign * smallest
        shift[[*bands["first"], *bands["last"]]] = sign * COMFORTABLE_MARGINS * smallest
        shifts[metric] = shift
    return dataclasses.replace(null, sample_shift=shifts)


COSINE_DRAWS = 20_000  # Monte-Carlo draws of a row's population mean cosine (its error under 5% of the jackknife's)


@functools.lru_cache(maxsize=4)  # a design evaluates the same draws dozens of times while it bisects
def _probe_draws(seed: int, probes: int, samples: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normals z and e (probes, samples, width) of the designs' Monte Carlo (``population_cosine``,
    ``expected_spectra``), in float32 like the states they make."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((probes, samples, width), dtype=np.float32) for _ in range(2))  # type: ignore[return-value]


def population_cosine(plan: LayerPlan, row: int, draws: int = COSINE_DRAWS, seed: int = 0) -> float:
    """The population mean per-sample cosine of base and SFT states at ``row`` (eq. 7's estimand), by Monte
    Carlo with fixed draws: ``plan`` must fix its mean's direction (``mean_direction``)."""
    if plan.mean_direction is None:
        raise ValueError("a population cosine needs the plan's mean direction fixed")
    z, e = (draw[0] for draw in _probe_draws(seed, 1, draws, plan.spectrum.shape[1]))
    x, y = _row_states(plan, row, _common_mean(plan, plan.mean_direction.copy()), z, e)
    return metrics.cosine_similarity(torch.from_numpy(x), torch.from_numpy(y))


def _solve(function: Callable[[float], float], target: float, low: float, high: float, steps: int = 40) -> float:
    """The argument in [low, high] where the monotone ``function`` meets ``target`` (bisection on a log scale,
    ``steps`` halvings: 40 shrink a bracket's ratio of 1e7 to 1 + 1e-11, 24 to 1 + 1e-6)."""
    ends = function(low), function(high)
    if not min(ends) <= target <= max(ends):
        raise ValueError(f"nothing in [{low:g}, {high:g}] meets {target:g}; the function spans {ends[0]:g}-{ends[1]:g}")
    rising = ends[1] > ends[0]
    for _ in range(steps):
        middle = math.sqrt(low * high)
        if (function(middle) < target) == rising:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


@functools.lru_cache(maxsize=32)  # solved once per design and size in each process, not per simulation
def _cosine_plan(condition: str, sizes: Sizes, cosine_drop_min: float) -> LayerPlan:
    """C1's cosine conditions at their thresholds, with a fixed mean direction so that each row's population
    mean cosine is a number (``population_cosine``); the other C1 conditions comfortable (``_comfortable``).

    - ``cosine_drop``: the last row's common mean scaled until its population cosine is exactly
      ``C1.cosine_drop_min`` below the plateau rows' mean (a larger common mean brings the cosine towards 1;
      centred CKA and the mean shift do not see it).
    - ``cosine_tail_below_plateau``: the middle plateau row's SFT centroid shifted until its population cosine
      equals the lowest tail row's (CKA does not see a shift, and the spike ratio reads the plateau's median).
    """
    cka, shift, probe, head, tail = _comfortable(sizes)
    direction = np.ones(sizes.width) / math.sqrt(sizes.width)
    plan = LayerPlan(
        cka,
        shift,
        probe,
        _spectrum(sizes.layers + 1, sizes.width),
        np.full(sizes.layers, 0.05),
        mean_direction=direction,
    )
    plateau = float(np.mean([population_cosine(plan, row) for row in head]))
    last = sizes.layers
    if condition == "cosine_drop":
        target = plateau - cosine_drop_min

        def cosine_at(scale: float) -> float:
            scales = np.ones(len(cka))
            scales[last] = scale
            return population_cosine(dataclasses.replace(plan, mean_scale=scales), last)

        scales = np.ones(len(cka))
        scales[last] = _solve(cosine_at, target, 1e-2, 1e3)
        return dataclasses.replace(plan, mean_scale=scales)
    lowest_tail = min(population_cosine(plan, row) for row in tail)
    middle = head[len(head) // 2]

    def cosine_with(moved: float) -> float:
        shifted = shift.copy()
        shifted[middle] = moved
        return population_cosine(dataclasses.replace(plan, shift=shifted), middle)

    shifted = shift.copy()
    shifted[middle] = _solve(cosine_with, lowest_tail, 1e-3, 1e4)
    return dataclasses.replace(plan, shift=shifted)


C7_COSINE_LEVEL, C7_COSINE_SPREAD = 0.96, 0.012  # the planted cosines' mean and spread across layers
C7_PAPER_R = -0.79  # Fig. 5, OLMo2-13B: r(weight change, cosine)
PAPER_CORRELATION = "paper:r_weight_change_cosine"  # C7 with exactly the paper's correlation planted


@functools.lru_cache(maxsize=32)  # solved once per size and correlation in each process
def correlation_plan(
    sizes: Sizes,
    r: float,
    centroid_shift: float = 10.0,
    level: float = C7_COSINE_LEVEL,
    spread: float = C7_COSINE_SPREAD,
    draws: int = COSINE_DRAWS,
) -> LayerPlan:
    """A pair whose population correlation across decoder layers between the weight change (exact: no
    log-normal noise) and the population mean cosine is exactly ``r`` (C7's first condition), and whose
    |Δ spectral norm| follows the weight change (its second condition comfortably met).

    The weight change climbs after the midpoint (Fig. 4's J); the SFT's centroid moves along the common mean's
    direction by ``centroid_shift`` times it, which adds that much to the SFT's largest singular value and little
    to its cosine; each row's common mean is then scaled (``_solve``) until its population cosine is the planted
    value (``_planted``: a level and a spread about it that correlate with the weight change at exactly r).
    """
    layers = sizes.layers
    rows = layers + 1
    position = (np.arange(1, layers + 1) - 0.5) / layers
    weight = 0.05 + 0.07 * (np.clip(position - 0.5, 0, None) / (position[-1] - 0.5)) ** 2
    planted = _planted(weight, r, level, spread)
    direction = np.eye(sizes.width)[0]
    plan = LayerPlan(
        np.full(rows, 0.8),
        np.concatenate([[0.0], centroid_shift * weight]),
        np.full(rows, 0.02),
        _spectrum(rows, sizes.width),
        weight,
        weight_spread=0.0,
        mean_direction=direction,
    )
    scales = np.ones(rows)
    for row in range(1, rows):

        def cosine_at(scale: float, row: int = row) -> float:
            trial = scales.copy()
            trial[row] = scale
            return population_cosine(dataclasses.replace(plan, mean_scale=trial), row, draws)

        scales[row] = _solve(cosine_at, planted[row - 1], 1e-3, 1e3)
    return dataclasses.replace(plan, mean_scale=scales)


SPECTRAL_PROBES = 400  # independent probes behind a row's expected spectral metrics at N (a design's estimand)
SPREAD_PROBES = 2000  # probes behind a design of small differences: C7's spectral correlation, a band's smallest change
SPECTRAL_STEPS = 24  # bisection steps of a design solving for expected spectral metrics (to 1 + 1e-6)


def expected_spectra(
    plan: LayerPlan, row: int, samples: int, model: str = "base", probes: int = SPECTRAL_PROBES, seed: int = 0
) -> dict[str, float]:
    """The expected value at ``samples`` probe samples of each spectral metric of ``model``'s states at ``row``:
    the estimand of these metrics (a probe's own value, docs/statistics.md), averaged over ``probes`` independent
    probes through ``metrics.spectra_of_singular_values``, the formulas a profile measures them with. The draws
    are fixed by ``seed``, so a design can solve for a value (``_solve``); ``plan`` must fix its mean's
    direction. The condition number enters as its logarithm, the curve C6 tracks."""
    if plan.mean_direction is None:
        raise ValueError("expected spectral metrics need the plan's mean direction fixed")
    d = plan.spectrum.shape[1]
    mean = _common_mean(plan, plan.mean_direction.copy())
    z, e = _probe_draws(seed, probes, samples, d)
    drawn = _base_states(plan, row, mean, z) if model == "base" else _sft_states(plan, row, mean, z, e)
    states = torch.from_numpy(drawn.astype(np.float32))
    states = states.double()  # float32 as profiled, then float64 as the metrics take it
    # every probe's singular values at once, from the eigenvalues of its smaller Gram matrix (several times
    # faster than an SVD; float64 keeps σ_min / σ_max to 1e-8, far below the rank tolerance of float32 data)
    gram = states @ states.mT if samples <= d else states.mT @ states
    sigmas = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt()
    spectra = metrics.spectra_of_singular_values(sigmas, (samples, d), torch.finfo(torch.float32).eps)
    return {
        "dataset_entropy": float(spectra["entropy"].mean()),
        "effective_rank": float(spectra["effective_rank"].mean()),
        "log_condition_number": float(spectra["condition_number"].log().mean()),
        "spectral_norm": float(spectra["spectral_norm"].mean()),
    }


# C6's designs (§4.2, Fig. 2): a transition from the embeddings, a plateau whose expected effective rank climbs
# gently (by PLATEAU_RISE from its first row to its last, its spectrum's decay ramping up to PLATEAU_END_DECAY),
# and a last row where one direction takes over
PLATEAU_END_DECAY, PLATEAU_RISE = 0.99, 0.10
EMBEDDING_DECAY = 0.3  # row 0's spectrum where C6's transition is comfortably met
STAGE_WIDTH = 24  # the narrowest hidden size whose plateau leaves an effective rank room to collapse five-fold
STAGE_OFFSET = 0.5  # a common mean that does not itself collapse the spectrum
# C6's collapse design with at least this many probe samples: with 40, the last row's effective rank is so noisy
# that the log ratio's own bias (E log R < log E R) let the collapse at its threshold hold 4-6% (N < D: N = 40,
# D = 66; 200-500 simulations), against 2.0-2.5% with 100
COLLAPSE_SAMPLES = 100
COLLAPSED_RANK = 1.25  # the comfortably collapsed last row's expected effective rank where COMFORT is out of reach
COMFORT = 4.0  # a C6 ratio comfortably met: this many times beyond its threshold (on the log scale of its interval)
C6_TRACKED = {  # C6's tracked curves (``claims._tracked``) -> the expected metric behind each
    "effective_rank": "effective_rank",
    "dataset_entropy": "dataset_entropy",
    "condition_number": "log_condition_number",
    "spectral_norm": "spectral_norm",
}


def _stage_spectrum(width: int, decay: float, boost: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """λ_k = scale² · decay^k, the widest direction times ``boost``."""
    spectrum = scale**2 * decay ** np.arange(width, dtype=float)
    spectrum[0] *= boost
    return spectrum


@functools.lru_cache(maxsize=32)  # solved once per design and size in each process, not per simulation
def stages_plan(
    condition: str, sizes: Sizes, transition_min: float, collapse_max: float, explode_min: float, track_min: float
) -> LayerPlan:
    """C6's three stages with one condition exactly at its threshold and the others ``COMFORT`` times beyond
    theirs, every value being an expected value at N (``expected_spectra``), solved by bisection.

    Base and SFT share every row's population (the SFT's spread rescaled to the base's), so both models' ratios
    sit where the design puts them:

    - ``transition_ratio``: row 0's spectrum decays faster, until |E rank(1) − E rank(0)| is the threshold
      times the median |step| of E rank between plateau rows;
    - ``rank_collapse_ratio``: the last row's widest direction is boosted until its E rank is the threshold
      times the plateau's median;
    - ``norm_explode_ratio``: the last row is scaled (its rank unchanged) until its E spectral norm is the
      threshold times the plateau's median;
    - ``min_track_pearson``: the SFT's tail rows before the last collapse early (their widest direction
      boosted) until the smallest correlation across rows of the base's and the SFT's expected curves is the
      threshold; the base keeps its last-row collapse only.
    """
    rows, width, n = sizes.layers + 1, sizes.width, sizes.samples
    head, tail = claims.tail_split(list(range(rows)), sizes.layers)
    plateau, last, early = [row for row in head if row >= 1], rows - 1, tail[:-1]
    if not early:
        raise ValueError(f"C6's designs need two tail rows; {sizes.layers} layers have {len(tail)}")
    decay = np.full(rows, PLATEAU_END_DECAY)
    boost, scale = np.ones(rows), np.ones(rows)

    def plan_of(sft_boost: float | None = None) -> LayerPlan:
        spectrum = np.stack([_stage_spectrum(width, decay[r], boost[r], scale[r]) for r in range(rows)])
        sft = None
        if sft_boost is not None:
            sft = spectrum.copy()
            sft[early] = np.stack([_stage_spectrum(width, decay[r], sft_boost, scale[r]) for r in early])
        return LayerPlan(
            np.full(rows, 0.985),
            np.zeros(rows),
            np.full(rows, 0.02),
            spectrum,
            np.full(sizes.layers, 0.05),
            offset=STAGE_OFFSET,
            keep_spread=True,
            mean_direction=np.ones(width) / math.sqrt(width),
            mean_scale=scale.copy(),
            sft_spectrum=sft,
        )

    def expected(row: int, plan: LayerPlan | None = None, model: str = "base") -> dict[str, float]:
        return expected_spectra(plan or plan_of(), row, n, model)

    def rank_at(row: int, parameter: str) -> Callable[[float], float]:
        target = {"decay": decay, "boost": boost}[parameter]

        def rank(value: float) -> float:
            target[row] = value
            return expected(row)["effective_rank"]

        return rank

    # the plateau's decay ramps from where the expected effective rank is PLATEAU_RISE below its end's
    end = expected(plateau[-1])["effective_rank"]
    start = _solve(rank_at(plateau[0], "decay"), end / (1 + PLATEAU_RISE), 0.05, PLATEAU_END_DECAY, SPECTRAL_STEPS)
    decay[plateau] = np.linspace(start, PLATEAU_END_DECAY, len(plateau))
    levels = {row: expected(row) for row in plateau}
    ranks = np.array([levels[row]["effective_rank"] for row in plateau])
    step = float(np.median(np.abs(np.diff(ranks))))
    rank_median = float(np.median(ranks))
    norm_median = float(np.median([levels[row]["spectral_norm"] for row in plateau]))

    if condition == "transition_ratio":
        decay[0] = _solve(rank_at(0, "decay"), ranks[0] - transition_min * step, 0.05, decay[1], SPECTRAL_STEPS)
    else:  # comfortably: embeddings whose few directions carry nearly everything
        decay[0] = EMBEDDING_DECAY
        if abs(ranks[0] - expected(0)["effective_rank"]) < COMFORT * transition_min * step:
            raise ValueError(f"the plateau's steps at width {width} leave no comfortable transition")
    # comfortably collapsed: COMFORT times below the threshold, or to 1.25 where the plateau is too narrow for that
    # (an effective rank is at least 1)
    if condition == "rank_collapse_ratio":
        collapse = collapse_max * rank_median
    else:
        collapse = max(collapse_max / COMFORT * rank_median, COLLAPSED_RANK)
    boost[last] = _solve(rank_at(last, "boost"), collapse, 1.0, 1e7, SPECTRAL_STEPS)
    explode = explode_min * (1 if condition == "norm_explode_ratio" else COMFORT)
    scale[last] = explode * norm_median / expected(last)["spectral_norm"]
    if condition != "min_track_pearson":
        return plan_of()
    base = [expected(row) for row in range(rows)]

    def smallest_track(sft_boost: float) -> float:
        plan = plan_of(sft_boost)
        sft = [expected(row, plan, "sft") if row in early else base[row] for row in range(rows)]
        return min(
            float(np.corrcoef([b[key] for b in base], [s[key] for s in sft])[0, 1]) for key in C6_TRACKED.values()
        )

    return plan_of(_solve(smallest_track, track_min, 1.0, 1e7, SPECTRAL_STEPS))


C7_SPECTRAL_LEVEL, C7_SPECTRAL_SPREAD = 0.10, 0.03  # planted Δ spectral norm over the base's mean: level, spread
# where C7's spectral design puts its cosine condition: r = -0.97, with cosines spread widely enough across layers
# (0.94 ± 0.018) that sampling noise at N = 40 leaves the correlation far beyond -0.70
C7_COMFORTABLE_R, C7_COMFORTABLE_COSINES = -0.97, (0.94, 0.018)


def _planted(weight: np.ndarray, r: float, level: float, spread: float) -> np.ndarray:
    """Values across decoder layers whose Pearson correlation with ``weight`` is exactly ``r``: the level plus
    the spread times ρ·ŵ + √(1 − ρ²)·v, ŵ the standardised weight change and v a fixed standardised pattern
    orthogonal to it."""
    standard = (weight - weight.mean()) / weight.std()
    pattern = np.where(np.arange(len(weight)) % 2 == 0, 1.0, -1.0)
    pattern = pattern - pattern.mean() - (pattern @ standard) / (standard @ standard) * standard
    pattern /= pattern.std()
    return level + spread * (r * standard + math.sqrt(1 - r**2) * pattern)


@functools.lru_cache(maxsize=32)  # solved once per size and correlation in each process
def spectral_correlation_plan(sizes: Sizes, r: float) -> LayerPlan:
    """C7's spectral condition at ``r``: the cosine design (``correlation_plan``) at ``C7_COMFORTABLE_R`` without
    its centroid shift, and the SFT's state at each row multiplied (which leaves every cosine as it is) until
    its expected spectral norm at N exceeds the base's by a planted amount that correlates with the exact
    weight change at exactly ``r`` (``_planted``: 0.10 ± 0.03 of the base's mean spectral norm)."""
    # the cosines need not sit exactly at their planted values here, only far beyond the threshold: fewer draws
    plan = correlation_plan(sizes, C7_COMFORTABLE_R, 0.0, *C7_COMFORTABLE_COSINES, draws=COSINE_DRAWS // 4)
    rows, n = sizes.layers + 1, sizes.samples
    # a correlation of 10 differences: more probes than a ratio needs (400 probes left it 0.008 above r at N < D)
    base = np.array([expected_spectra(plan, row, n, probes=SPREAD_PROBES)["spectral_norm"] for row in range(1, rows)])
    sft = np.array([expected_spectra(plan, row, n, "sft", SPREAD_PROBES)["spectral_norm"] for row in range(1, rows)])
    change = base.mean() * _planted(plan.weight, r, C7_SPECTRAL_LEVEL, C7_SPECTRAL_SPREAD)
    return dataclasses.replace(plan, sft_scale=np.concatenate([[1.0], (base + change) / sft]))


@functools.lru_cache(maxsize=32)  # solved once per design and size in each process
def _directional_dataset_plan(metric: str, sizes: Sizes, margin: float, relative_margin: float) -> LayerPlan:
    """The directional null with one dataset-level hypothesis's middle band exactly at its smallest change of
    interest (``margin`` + ``relative_margin`` of the base's expected level, downwards as claimed) and the first
    and last bands ``COMFORTABLE_MARGINS`` times beyond it: the SFT's spread shrinks at each band's rows until
    its expected ``metric`` at N is there (its common mean, unchanged, then takes a larger share)."""
    null = dataclasses.replace(
        layer_plan("directional_null", sizes), mean_direction=np.ones(sizes.width) / math.sqrt(sizes.width)
    )
    row = depth.row_of_layer(0)  # every row has the same population: one row's level is every row's
    level = expected_spectra(null, row, sizes.samples, probes=SPREAD_PROBES)[metric]

    def sft_level(shrink: float) -> float:
        plan = dataclasses.replace(null, sft_spectrum=null.spectrum * shrink)
        return expected_spectra(plan, row, sizes.samples, "sft", SPREAD_PROBES)[metric]

    smallest = margin + relative_margin * abs(level)
    middle = _solve(sft_level, level - smallest, 1e-4, 1.0, SPECTRAL_STEPS)
    edges = _solve(sft_level, level - COMFORTABLE_MARGINS * smallest, 1e-4, 1.0, SPECTRAL_STEPS)
    sft = null.spectrum.copy()
    for band, layers in depth.layer_groups(sizes.layers).items():
        for layer in layers:
            sft[depth.row_of_layer(layer)] *= middle if band == "middle" else edges
    return dataclasses.replace(null, sft_spectrum=sft)


BOUNDARIES = {  # per-layer boundary designs: boundary:<condition> -> how the condition is put at its threshold
    "cka_plateau_min": "one plateau row's CKA at 0.98, the others at 0.995",
    "cka_drop": "the last row's CKA C1.cka_drop_min below the plateau mean (0.995), the other tail rows at 0.98-0.97",
    "mean_shift_spike_ratio": "the tail's largest mean shift 12 times the plateau's median (0.5)",
    "dormant_max": "one plateau row's accuracy at 0.05, the others at 0.02",
    "tail_rise": "every tail row's accuracy 0.5 above the plateau's highest (0.02)",
    "directional_sample": "the sample-level metrics' middle band exactly at its smallest change, the others 20x",
    "cosine_drop": "the last row's population cosine C1.cosine_drop_min below the plateau's mean",
    "cosine_tail_below_plateau": "one plateau row's population cosine equal to the lowest tail row's",
    "r_weight_change_cosine": "the population correlation of weight change and cosine across layers at C7's",
    "r_weight_change_spectral": "the correlation of weight change and expected |Δ spectral norm| at N at C7's",
    "transition_ratio": "the expected effective rank's jump from row 0 to 1 at C6's ratio to the plateau's steps",
    "rank_collapse_ratio": "the last row's expected effective rank at C6's ratio to the plateau's median",
    "norm_explode_ratio": "the last row's expected spectral norm at C6's ratio to the plateau's median",
    "min_track_pearson": "the SFT's tail collapsing early, until the least correlated expected curves are at C6's r",
    "directional_dataset_entropy": "the SFT's expected dataset entropy at N in the middle band at its smallest change",
    "directional_effective_rank": "the SFT's expected effective rank at N in the middle band at its smallest change",
}
STAGE_CONDITIONS = ("transition_ratio", "rank_collapse_ratio", "norm_explode_ratio", "min_track_pearson")
DATASET_METRICS = ("dataset_entropy", "effective_rank")


def layer_verdicts(
    scenario: str,
    sizes: Sizes,
    thresholds: dict,
    rng: np.random.Generator,
    keys: Sequence[str] = PER_LAYER,
    plan: LayerPlan | None = None,
) -> dict[str, claims.Verdict]:
    """The per-layer verdicts on one simulated pair, as ``verification.Measured`` gives them on a real one
    (``plan``: the scenario's population, where it was solved already)."""
    # claims of the pair series alone leave out the SVD per layer and model, half a simulation at N = 1,000
    spectral = not all(bootstrap.NEEDS.get(key) == "pair" for key in keys)
    pair = simulated_pair(plan or layer_plan(scenario, sizes, thresholds), sizes, rng, spectral)
    sampling = thresholds["bootstrap"]
    measured = verification.Measured(
        "simulated", pair, thresholds, bootstrap.Resampler(pair, sampling["jackknife_groups"], sampling["seed"])
    )
    return {key: measured.verdict(key) for key in keys}


def directional_verdicts(
    scenario: str, sizes: Sizes, thresholds: dict, rng: np.random.Generator, keys: Sequence[str] = DIRECTIONAL
) -> dict[str, claims.Verdict]:
    """The §3.3-3.4 verdicts on one simulated pair whose SFT changes no intrinsic metric in the population:
    the same spectrum, centroid and second moment at every row (eq. 9's dataset metrics), and per-sample
    token metrics drawn alike for both models (eq. 8's paired differences), through ``verification.Measured``."""
    if scenario != "null":
        raise KeyError(f"unknown directional scenario {scenario!r}; known: null")
    return layer_verdicts("directional_null", sizes, thresholds, rng, keys)


# --- C3: a simulated layer swap ------------------------------------------------------------------


HOST_SCORE = -1.2  # the expected mean answer log-likelihood of a simulated swap's host
PAPER_SWAP_SCORE = 0.6  # Fig. 6's OLMo2-13B MMLU score, the scale of its swap differences


def swap_result(
    host_shift: float,
    segment_shift: Callable[[int, int], float],
    sizes: Sizes,
    rng: np.random.Generator,
    item_sd: float = 0.6,
    hybrid_sd: float = 0.01,
) -> dict:
    """A ``swap.swap_scores``-like result: per-item mean answer log-likelihoods of the host and of every
    hybrid, for every M of C3. Items differ in difficulty (shared by all models); each hybrid moves each
    item by its own noise (sd ``hybrid_sd``) around its planted shift ``segment_shift(M, segment)`` (the
    host: ``host_shift``). With exchangeable hybrids the outcome of the margin does not depend on
    ``hybrid_sd`` (everything scales with it); the host conditions and the power do."""
    items = sizes.swap_items
    difficulty = HOST_SCORE + item_sd * rng.standard_normal(items)
    host = difficulty + host_shift + hybrid_sd * rng.standard_normal(items)
    result = {
        "n_layers": sizes.layers,
        "host": {"per_item": host.tolist(), "score": float(host.mean())},
        "segments": {},
        "items": {},
    }
    for m in (3, 5, 10):
        per_item = [difficulty + segment_shift(m, s) + hybrid_sd * rng.standard_normal(items) for s in range(m)]
        result["items"][m] = [row.tolist() for row in per_item]
        result["segments"][m] = [{"segment": s, "score": float(row.mean())} for s, row in enumerate(per_item)]
    return result


def swap_verdicts(
    scenario: str, sizes: Sizes, thresholds: dict, rng: np.random.Generator, keys: Sequence[str] = ("C3",)
) -> dict[str, claims.Verdict]:
    """C3 on one simulated swap.

    - ``null``: every hybrid and the host alike (segments exchangeable across positions).
    - ``boundary``: hybrids alike, all 0.005 below the host (edges lower the host, the middle stays within
      the host margin): the deciding margin, middle minus best edge, is exactly at its threshold of 0.
    - ``boundary:edges_at_host``: the edge hybrids exactly the smallest drop of interest below the host
      (``C3.edge_drop_relative_min`` of its expected score), the middle ones 0.01 above it.
    - ``boundary:middle_at_host_margin``: the middle hybrids exactly ``C3.host_margin`` below the host, the edge
      ones 0.02 below them.
    - ``paper``: Fig. 6 (OLMo2-13B MMLU, a score of about 0.6): middle swaps +0.003, first/last 20%
      −0.001/−0.002 against the host, planted as the same shares of the simulated host's score (+0.5%,
      −0.17%, −0.33%), since the swaps here are scored by answer log-likelihood, not accuracy.
    """

    def paper(m: int, s: int) -> float:
        groups = depth.segment_groups(sizes.layers, m)
        accuracy_change = 0.003 if s in groups["middle"] else (-0.001 if s in groups["first"] else -0.002)
        return accuracy_change / PAPER_SWAP_SCORE * abs(HOST_SCORE)

    def edges_at_host(m: int, s: int) -> float:
        smallest_drop = float(thresholds["C3"]["edge_drop_relative_min"]) * abs(HOST_SCORE)
        return 0.01 if s in depth.segment_groups(sizes.layers, m)["middle"] else -smallest_drop

    def middle_at_host_margin(m: int, s: int) -> float:
        margin = float(thresholds["C3"]["host_margin"])
        return -margin if s in depth.segment_groups(sizes.layers, m)["middle"] else -margin - 0.02

    shifts = {
        "null": (0.0, lambda m, s: 0.0),
        "boundary": (0.0, lambda m, s: -0.005),
        "boundary:edges_at_host": (0.0, edges_at_host),
        "boundary:middle_at_host_margin": (0.0, middle_at_host_margin),
        "paper": (0.0, paper),
    }
    if scenario not in shifts:
        raise KeyError(f"unknown swap scenario {scenario!r}; known: {sorted(shifts)}")
    result = swap_result(*shifts[scenario], sizes, rng)
    return {key: verification.swap_verdict(result, _swap_count(key), thresholds) for key in keys}


def _swap_count(key: str) -> int:
    return int(key.removeprefix("C3:M")) if key.startswith("C3:M") else SWAP_SEGMENTS


# --- C4, C4:M5, the referee's control, C8: a simulated LoRA study --------------------------------

LORA_LAYERS = 10  # a 10-layer plan: 5 segments of 2 layers, a 6-layer mid-block, random 6-layer sets


@dataclass(frozen=True)
class LoraPlan:
    """Planted population values of every arm: task success rate and retention perplexity, seed noise."""

    success: Callable[[str], float]  # arm label -> success rate
    perplexity: Callable[[str], float]  # arm label or "base" -> retention perplexity
    seed_sd: float = 0.05  # sd of a run's success rate around its arm's (one draw per arm and seed)
    item_correlation: float = 0.5  # items that are hard for one arm are hard for all (latent correlation)
    log_ppl_seed_sd: float = 0.002  # sd of a run's log perplexity around its arm's
    log_ppl_text_sd: float = 0.3  # texts differ in difficulty, shared by every model
    log_ppl_noise_sd: float = 0.01  # each run moves each text by its own noise
    extra: dict = field(default_factory=dict)


def _gsm8k_paper(label: str) -> float:
    """§4.4, Fig. 7 (OLMo2-7B GSM8K): 01000 0.375, full LoRA 0.28; bottom segment 0.22 and top 0.20 (the
    paper's 13B and 1B edges relative to their baselines); the other middle configurations between."""
    planted = {"01000": 0.375, "11111": 0.28, "10000": 0.22, "00001": 0.20, "first20": 0.22, "last20": 0.20}
    if label in planted:
        return planted[label]
    if label.startswith("random"):
        return 0.28
    return 0.33  # 00100, 00010, 01110, 01100, 00110, the mid-block


def _retention_paper(label: str) -> float:
    """App. B, Table 4 (OLMo2-13B IFEval): base 14.53, 00110 14.54, 11111 14.70, 10000 14.61, 00001 14.65;
    other middle masks as close as 00110, random layer sets as far as full LoRA."""
    planted = {"base": 14.53, "11111": 14.70, "10000": 14.61, "00001": 14.65, "first20": 14.61, "last20": 14.65}
    if label in planted:
        return planted[label]
    return 14.70 if label.startswith("random") else 14.54


def lora_plan(scenario: str, seed_sd: float = 0.05) -> LoraPlan:
    """- ``null``: every arm alike (success 0.30, perplexity 14.60 against a base at 14.53): arms exchangeable
    across positions, so every margin of C4, C4:M5, the control and C8 is exactly at its threshold of 0.
    - ``paper``: the paper's GSM8K and retention numbers (``_gsm8k_paper``, ``_retention_paper``)."""
    if scenario == "null":
        return LoraPlan(lambda label: 0.30, lambda label: 14.53 if label == "base" else 14.60, seed_sd)
    if scenario == "paper":
        return LoraPlan(_gsm8k_paper, _retention_paper, seed_sd)
    if scenario in HARDEST:
        return LoraPlan(HARDEST[scenario], lambda label: 14.53 if label == "base" else 14.60, seed_sd)
    if scenario == "hardest_retention":
        return LoraPlan(lambda label: 0.30, _retention_hardest, seed_sd)
    raise KeyError(f"unknown LoRA scenario {scenario!r}; known: null, paper, {', '.join(HARDEST)}")


def _gsm8k_hardest(label: str) -> float:
    """The hardest null of C4's best-of-k pick: every middle arm exactly at full LoRA's 0.28 (the deciding
    comparison at its threshold of 0) while the edge arms sit far below (0.15), so that the other conditions
    are comfortably met and only the pick of the luckiest middle arm can make C4 hold."""
    if label in ("10000", "00001", "first20", "last20"):
        return 0.15
    return 0.28


def _gsm8k_hardest_u(label: str) -> float:
    """The hardest null of the single-segment inverted U (C4:M5), a best-of-k pick on both sides: every middle
    segment exactly at the best edge segment's 0.28 (the deciding margin at 0) while the other edge sits far
    below (0.15), so that the scores' range comfortably exceeds its threshold."""
    return 0.15 if label == "00001" else 0.28


def _gsm8k_hardest_against(edge: str) -> Callable[[str], float]:
    """The hardest null of a comparison of the middle arms with one edge arm (``first`` or ``last``): every
    middle arm, the pre-registered mid-block included, exactly at that edge's 0.28 (the deciding comparison at
    its threshold of 0), full LoRA, the other edge and the random layer sets far below (0.15)."""
    at_threshold = {"first": ("10000", "first20"), "last": ("00001", "last20")}[edge]
    others = ("11111", "10000", "00001", "first20", "last20")

    def success(label: str) -> float:
        if label in at_threshold:
            return 0.28
        return 0.15 if label in others or label.startswith("random") else 0.28

    return success


def _gsm8k_hardest_random(label: str) -> float:
    """The hardest null of the referee's control against random layer sets: the mid-block exactly at the random
    sets' 0.28 (their mean at the threshold of 0), the edges far below (0.15)."""
    return 0.15 if label in ("11111", "10000", "00001", "first20", "last20") else 0.28


HARDEST = {  # scenario -> planted success per arm
    "hardest": _gsm8k_hardest,
    "hardest_u": _gsm8k_hardest_u,
    "hardest_first": _gsm8k_hardest_against("first"),
    "hardest_last": _gsm8k_hardest_against("last"),
    "hardest_random": _gsm8k_hardest_random,
}


def _retention_hardest(label: str) -> float:
    """C8 at its boundary: every middle arm exactly as far from the base (14.53) as the closest compared arm,
    10000 (both at 14.60), the other compared arms far away (14.80)."""
    return {"base": 14.53, "11111": 14.80, "00001": 14.80}.get(label, 14.60)


def simulated_study(plan: LoraPlan, sizes: Sizes, thresholds: dict, rng: np.random.Generator) -> lora_study.LoraStudy:
    """A LoRA study of a 10-layer model (every arm of ``study_plan.plan_arms``) whose runs are drawn from
    ``plan``: per seed a random offset of the arm's success rate, per item a binary outcome through a
    Gaussian copula (a shared item difficulty correlates arms), per retention text a log perplexity."""
    seeds = tuple(range(sizes.seeds))
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=seeds, retention_sets=("simulated",))
    arms = study_plan.plan_arms(LORA_LAYERS, thresholds, settings, segment_counts=[5])
    rho = plan.item_correlation
    difficulty = rng.standard_normal(sizes.items)
    tokens = rng.integers(50, 200, sizes.texts).astype(float)
    text_effect = plan.log_ppl_text_sd * rng.standard_normal(sizes.texts)

    def retention(perplexity: float, seed_offset: float) -> dict:
        log_ppl = math.log(perplexity) + seed_offset + text_effect
        nll = tokens * (log_ppl + plan.log_ppl_noise_sd * rng.standard_normal(sizes.texts))
        return {
            "simulated": {
                "perplexity": float(np.exp(nll.sum() / tokens.sum())),
                "per_text": {"nll": nll, "tokens": tokens},
            }
        }

    def run(label: str) -> dict:
        rate = float(np.clip(plan.success(label) + plan.seed_sd * rng.standard_normal(), 1e-4, 1 - 1e-4))
        latent = math.sqrt(rho) * difficulty + math.sqrt(1 - rho) * rng.standard_normal(sizes.items)
        per_item = (latent < stats.norm.ppf(rate)).astype(float)
        return {
            "task": {
                "score": float(per_item.mean()),
                "stderr": float(per_item.std() / math.sqrt(sizes.items)),
                "per_item": per_item,
            },
            "likelihood": {"score": math.nan},
            "retention": retention(plan.perplexity(label), plan.log_ppl_seed_sd * rng.standard_normal()),
            "final_loss": math.nan,
            "trainable_parameters": arms.arms[0].full_budget,
            "seconds": {"train": 0.0, "score": 0.0},
        }

    study = lora_study.LoraStudy("simulated", None, thresholds, settings, arms)
    study.untuned = {
        "task": {"score": 0.0, "stderr": 0.0},
        "likelihood": {"score": math.nan},
        "retention": retention(plan.perplexity("base"), 0.0),
    }
    study.runs = {(arm.label, s): run(arm.label) for arm in arms.arms for s in seeds}
    return study


def lora_verdicts(
    scenario: str,
    sizes: Sizes,
    thresholds: dict,
    rng: np.random.Generator,
    keys: Sequence[str] = LORA,
    seed_sd: float = 0.05,
) -> dict[str, claims.Verdict]:
    study = simulated_study(lora_plan(scenario, seed_sd), sizes, thresholds, rng)
    return {key: study.verdict(key) for key in keys}


# --- rates -----------------------------------------------------------------------------------------

CKA_CONDITIONS = ("cka_plateau_min", "cka_drop", "cka_lowest_layer_depth")
FOCUS = {  # (claim, scenario) -> the conditions whose joint outcome is reported beside the verdict's
    ("C1", "null"): ("cka_drop",),
    ("C1", "paper"): CKA_CONDITIONS,
    ("C3", "null"): ("middle_minus_best_edge",),
    ("C3", "paper"): ("middle_minus_best_edge",),
    ("C5", "null"): ("tail_rise",),
    ("C5", "paper"): ("tail_rise",),
}


def calibration_key(claim: str) -> str:
    """The verdict a registry entry is calibrated on: the single-segment inverted U at M = 5 (``SWAP_SEGMENTS``)."""
    return claim.replace("{count}", str(SWAP_SEGMENTS))


def focus_of(claim: str, family: str, scenario: str) -> tuple[str, ...]:
    """The conditions a scenario puts at their threshold (the registry's boundary designs), else ``FOCUS``'s."""
    for entry, names in registry.simulated_designs().get(f"{family}:{scenario}", {}).items():
        if calibration_key(entry) == claim and scenario != "null":
            return names
    return FOCUS.get((claim, scenario), ())


_SIMULATORS = {
    "layers": layer_verdicts,
    "swap": swap_verdicts,
    "lora": lora_verdicts,
    "directional": directional_verdicts,
}
_SCENARIO_CODES = {"null": 0, "boundary": 1, "paper": 2, "hardest": 3, "hardest_u": 4}  # later ones: a checksum


def _scenario_code(scenario: str) -> int:
    """A fixed number per scenario, part of every simulation's seed (later designs by a checksum of the name)."""
    return _SCENARIO_CODES.get(scenario, zlib.crc32(scenario.encode()))


_CHUNK = 25  # simulations per job handed to a worker


@dataclass(frozen=True)
class Batch:
    """Simulations of one family's claims under one scenario, at one size (and simulator options)."""

    family: str
    scenario: str
    sizes: Sizes
    keys: tuple[str, ...] = ()
    label: str = ""  # the scenario's name in the tables (default: the scenario)
    options: tuple[tuple[str, float], ...] = ()  # simulator keyword arguments (seed_sd of the LoRA runs)

    @property
    def claims(self) -> tuple[str, ...]:
        return self.keys or FAMILIES[self.family]

    def describe_sizes(self) -> str:
        s = self.sizes
        layers = f"L={s.layers} N={s.samples} D={s.width} tokens={s.token_samples}"
        return {
            "layers": layers,
            "directional": layers,
            "swap": f"L={s.layers} items={s.swap_items}",
            "lora": f"items={s.items} seeds={s.seeds} texts={s.texts}",
        }[self.family]


def family_of(claim: str) -> str:
    for family, keys in FAMILIES.items():
        if claim in keys or (family == "swap" and claim.startswith("C3:M")):
            return family
    raise KeyError(f"unknown claim {claim!r}; known: {', '.join(CLAIM_KEYS)}")


def _focus_outcome(verdict: claims.Verdict, names: Sequence[str]) -> str:
    """The joint outcome of the deciding conditions matching ``names`` (registry names: ``{role}_minus_full``)."""
    specs = [registry.ConditionSpec(name, "", "", "") for name in names]
    outcomes = [c.outcome for c in verdict.deciding if any(spec.matches(c.name) for spec in specs)]
    if outcomes and all(o == claims.HOLDS for o in outcomes):
        return claims.HOLDS
    return claims.REFUTED if claims.REFUTED in outcomes else claims.INCONCLUSIVE


Outcome = tuple[str, str | None, tuple[tuple[str, str], ...]]  # verdict, focus conditions, each deciding condition


def _simulate_chunk(job: tuple) -> list[dict[str, Outcome]]:
    """Outcomes of simulations ``indices`` of one batch: per claim, (verdict, focus conditions, every deciding
    condition's own)."""
    batch, thresholds, seed, indices, plan = job
    torch.set_num_threads(1)  # one simulation per core: threads would only contend
    options = dict(batch.options) | ({"plan": plan} if plan is not None else {})
    out = []
    for index in indices:
        rng = np.random.default_rng([seed, list(FAMILIES).index(batch.family), _scenario_code(batch.scenario), index])
        verdicts = _SIMULATORS[batch.family](batch.scenario, batch.sizes, thresholds, rng, batch.claims, **options)
        out.append(
            {
                key: (
                    v.outcome,
                    _focus_outcome(v, focus) if (focus := focus_of(key, batch.family, batch.scenario)) else None,
                    tuple((c.name, c.outcome) for c in v.deciding),
                )
                for key, v in verdicts.items()
            }
        )
    return out


def _solved_plan(job: tuple[str, Sizes, dict]) -> LayerPlan:
    torch.set_num_threads(1)
    return layer_plan(*job)


def default_workers() -> int:
    """``$HARNESS_WORKERS`` when set (a lane that shares the machine with others asks for 1), else up to two
    processes on the cores this process may use."""
    configured = os.environ.get("HARNESS_WORKERS")
    if configured:
        return max(1, int(configured))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, usable)


def run_batches(
    batches: Sequence[Batch],
    simulations: int | Sequence[int],
    seed: int = 0,
    thresholds: dict | None = None,
    workers: int | None = None,
) -> list[dict[str, list[tuple[str, str | None]]]]:
    """Per batch, per claim, the outcome of every simulation (and of its focus conditions), in order.

    All batches share one pool of ``workers`` processes (default: ``default_workers``): it first solves each
    per-layer scenario's population once (``layer_plan``: a design may solve for expected values, seconds each),
    then is fed chunks of simulations; each simulation draws from its own seeded generator, so the outcomes do not
    depend on the split.
    """
    thresholds = thresholds or config.thresholds_for("calibration")
    counts = [simulations] * len(batches) if isinstance(simulations, int) else list(simulations)
    workers = workers or default_workers()
    chunks = sum(math.ceil(count / _CHUNK) for count in counts)
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 and chunks > 1 else nullcontext() as pool:
        run = pool.map if pool is not None else map
        # the dearest solves first, so that the workers finish them together
        scenarios = sorted(
            {(b.scenario, b.sizes) for b in batches if b.family == "layers"},
            key=lambda item: -item[1].width * item[1].layers,
        )
        plans = dict(zip(scenarios, run(_solved_plan, [(*item, thresholds) for item in scenarios]), strict=True))
        jobs, owners = [], []
        for number, (batch, count) in enumerate(zip(batches, counts, strict=True)):
            plan = plans[batch.scenario, batch.sizes] if batch.family == "layers" else None
            for start in range(0, count, _CHUNK):
                jobs.append((batch, thresholds, seed, range(start, min(start + _CHUNK, count)), plan))
                owners.append(number)
        parts = list(run(_simulate_chunk, jobs))
    results: list[dict[str, list]] = [{key: [] for key in batch.claims} for batch in batches]
    for number, part in zip(owners, parts, strict=True):
        for row in part:
            for key, outcome in row.items():
                results[number][key].append(outcome)
    return results


def simulate(
    family: str,
    scenario: str,
    simulations: int,
    seed: int = 0,
    sizes: Sizes = SMALL,
    keys: Sequence[str] = (),
    workers: int | None = None,
    **options,
) -> dict[str, list[tuple[str, str | None]]]:
    """Per claim of ``family`` (or of ``keys``), the outcome of every simulation of ``scenario``."""
    batch = Batch(family, scenario, sizes, tuple(keys), options=tuple(sorted(options.items())))
    return run_batches([batch], simulations, seed, workers=workers)[0]


def rates(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Shares of holds / refuted / inconclusive, and of holds of the focus conditions (NaN when none)."""
    verdicts = [o[0] for o in outcomes]
    focus = [o[1] for o in outcomes if o[1] is not None]
    count = max(len(verdicts), 1)
    return {
        **{o: verdicts.count(o) / count for o in claims.OUTCOMES},
        "focus_holds": focus.count(claims.HOLDS) / len(focus) if focus else math.nan,
        "simulations": len(verdicts),
    }


def null_rates(
    claim: str,
    simulations: int = 500,
    seed: int = 0,
    sizes: Sizes = SMALL,
    scenario: str = "null",
    workers: int | None = None,
    **options,
) -> dict[str, float]:
    """How often ``claim`` holds, is refuted, is inconclusive on data with no effect (or at the boundary)."""
    return rates(simulate(family_of(claim), scenario, simulations, seed, sizes, [claim], workers, **options)[claim])


def power_rates(
    claim: str, simulations: int = 100, seed: int = 0, sizes: Sizes = PAPER, workers: int | None = None, **options
) -> dict[str, float]:
    """How often ``claim`` holds at the paper's effect sizes (its power)."""
    return null_rates(claim, simulations, seed, sizes, "paper", workers, **options)


WIDE_RATIO = 0.6  # N/D of the designs with fewer samples than dimensions
# N/D of a real model's profile: the paper's 1,000 probe samples against D = 5,120 (13B, 32B); 0.24-0.49 at
# D = 2,048-4,096. What an estimator at N < D feels is this ratio (the sample spectrum's spread around the
# population's grows with D/N), so the nightly designs at N = 100 and D = 500 stand for N = 1,000 and D = 5,000,
# whose spectral jackknife costs minutes a simulation.
REAL_RATIO = 0.2


def wide(sizes: Sizes, ratio: float = WIDE_RATIO) -> Sizes:
    """``sizes`` with fewer probe samples than hidden dimensions (N = ``ratio`` · D), where every real model's
    profile lives: the same scenario, another regime of every estimator."""
    return sizes.scaled(width=max(sizes.width, int(sizes.samples / ratio)))


def _narrow_label(ratio: float) -> str:
    return "N < D" if ratio == WIDE_RATIO else f"N = {ratio:g} D"


def null_batches(sizes: Sizes = SMALL, ratios: Sequence[float] = (WIDE_RATIO,)) -> list[Batch]:
    """Every claim on data with no effect; the per-layer claims and the directional hypotheses also with fewer
    samples than dimensions, at each N/D of ``ratios`` (``wide``)."""
    per_layer = (*PER_LAYER, *DIRECTIONAL)  # one simulated pair serves both
    return [
        Batch("layers", "null", sizes, per_layer),
        *(Batch("layers", "null", wide(sizes, r), per_layer, label=f"null, {_narrow_label(r)}") for r in ratios),
        Batch("swap", "null", sizes),
        Batch("lora", "null", sizes),
    ]


HARDEST_ITEMS = 200  # the best-of-k picks at their hardest: many items and quiet seeds leave the pick the most room
HARDEST_SEED_SD = 0.01
BOUNDARY_LIMIT = 0.025  # a condition exactly at its threshold may hold at most this often (one-sided 95% intervals)
# designs of statistics read from the token-level samples alone (logit-lens accuracy, per-sample metrics): with
# the paper's 100 token-level samples (§4.1), and not at N < D, since the hidden size does not enter them
TOKEN_LEVEL_DESIGNS = ("boundary:dormant_max", "boundary:tail_rise", "boundary:directional_sample")
TOKEN_SAMPLES = 100


def boundary_limit(simulations: int, limit: float = BOUNDARY_LIMIT) -> float:
    """``limit`` plus two Monte-Carlo standard errors of a rate of ``limit`` over ``simulations``."""
    return limit + 2 * math.sqrt(limit * (1 - limit) / max(simulations, 1))


REAL_DEPTHS = (16, 32, 64)  # a 1B-7B model's 16-32 layers, a 32B model's 64


def _hidden_size_designs() -> list[tuple[str, list[str]]]:
    """(scenario, claims) of the per-layer boundary designs whose statistics see the hidden size (not the null,
    not those of the token-level samples)."""
    designs = []
    for design, entries in registry.simulated_designs().items():
        family, _, scenario = design.partition(":")
        if family == "layers" and scenario != "null" and scenario not in TOKEN_LEVEL_DESIGNS:
            designs.append((scenario, list(entries)))
    return designs


def _sized_batch(scenario: str, entries: Sequence[str], sizes: Sizes) -> Batch:
    label = f"{scenario}, L={sizes.layers}, N={sizes.samples}, D={sizes.width}"
    return Batch("layers", scenario, sizes, tuple(calibration_key(c) for c in entries), label)


def real_size_batches(sizes: Sizes = REAL, depths: Sequence[int] = ()) -> list[Batch]:
    """The per-layer boundary designs of the claims that read only the pair series (``bootstrap.NEEDS``: C1's CKA,
    cosine and mean-shift conditions) at ``sizes``, the paper's sample count with D ≥ N, at each of ``depths``
    (default: the sizes' layers). One simulation there takes about 4 s on one core at 16 layers, twice that at 32
    (the pair's tables and jackknife; the spectral metrics, which these claims do not read, are left out). The
    spectral series' jackknife (50 eigen-decompositions of 1,000 × 1,000 per row and model, 2 minutes a
    simulation at 16 layers) cannot be afforded, which is why the designs of the other claims stay at N = 100
    (``boundary_batches``)."""
    return [
        _sized_batch(scenario, entries, sizes.scaled(layers=layers))
        for scenario, entries in _hidden_size_designs()
        if all(bootstrap.NEEDS.get(claim) == "pair" for claim in entries)
        for layers in depths or (sizes.layers,)
    ]


def real_ratio_batches(sizes: Sizes = NIGHTLY, depths: Sequence[int] = ()) -> list[Batch]:
    """Every per-layer boundary design whose statistics see the hidden size, with N/D at a real model's
    ``REAL_RATIO`` (N = 100, D = 500 from the nightly sizes), at each of ``depths``: where the designs of the claims
    that read the spectral series, which ``real_size_batches`` cannot afford at N = 1,000, meet a real model's
    regime (a simulation takes about 1 s at 16 layers)."""
    return [
        _sized_batch(scenario, entries, wide(_design_sizes(scenario, sizes.scaled(layers=layers)), REAL_RATIO))
        for scenario, entries in _hidden_size_designs()
        for layers in depths or (sizes.layers,)
    ]


def boundary_table(
    batches: Sequence[Batch], simulations: int, seed: int = 0, workers: int | None = None
) -> pd.DataFrame:
    """Holds per claim at each of ``batches`` (``real_size_batches``, ``real_ratio_batches``), ``simulations``
    each: a boundary table of its own, for the designs that run at night in jobs of their own."""
    return _table(batches, run_batches(batches, simulations, seed, workers=workers))


def _design_sizes(scenario: str, sizes: Sizes) -> Sizes:
    """The sizes a per-layer boundary design needs at least: C6's a plateau with room to collapse."""
    if scenario.removeprefix("boundary:") in STAGE_CONDITIONS:
        sizes = sizes.scaled(width=max(sizes.width, STAGE_WIDTH))
    if scenario == "boundary:rank_collapse_ratio":
        sizes = sizes.scaled(samples=max(sizes.samples, COLLAPSE_SAMPLES))
    return sizes


def boundary_batches(sizes: Sizes = SMALL, depths: Sequence[int] = ()) -> list[Batch]:
    """One batch per simulated boundary design of the registry (``registry.simulated_designs``): each claim
    whose condition the design puts at its threshold while its other conditions are comfortably met. The
    per-layer designs also with fewer samples than dimensions (those of the token-level samples with 100 of
    them instead); the LoRA designs with 200 items and quiet seeds, where a pick of the luckiest arm has the
    most room. ``depths``: the per-layer and swap designs at each of these layer counts (default: the sizes').
    The designs at the paper's sample count and at a real model's N/D have tables of their own (``boundary_table``
    of ``real_size_batches`` and ``real_ratio_batches``)."""
    batches = []
    for design, entries in registry.simulated_designs().items():
        family, _, scenario = design.partition(":")
        if scenario == "null":
            continue  # the null batches put these at their threshold already
        keys = tuple(calibration_key(claim) for claim in entries)
        if family == "lora":
            batches.append(
                Batch(
                    family,
                    scenario,
                    sizes.scaled(items=HARDEST_ITEMS),
                    keys,
                    f"{scenario}, seed sd {HARDEST_SEED_SD:g}",
                    (("seed_sd", HARDEST_SEED_SD),),
                )
            )
            continue
        for layers in depths or (sizes.layers,):
            deep = sizes.scaled(layers=layers)
            at = f", L={layers}" if depths else ""
            if family == "layers" and scenario in TOKEN_LEVEL_DESIGNS:
                count = max(sizes.token_samples, TOKEN_SAMPLES)
                tokens = deep.scaled(samples=max(sizes.samples, count), token_samples=count)
                batches.append(Batch(family, scenario, tokens, keys, f"{scenario}{at}"))
            elif family == "layers":
                deep = _design_sizes(scenario, deep)
                batches += [
                    Batch(family, scenario, deep, keys, f"{scenario}{at}"),
                    Batch(family, scenario, wide(deep), keys, f"{scenario}{at}, N < D"),
                ]
            else:
                batches.append(Batch(family, scenario, deep, keys, f"{scenario}{at}"))
    return batches


POWER_SEED_SDS = (0.01, 0.05)  # between-seed sd of a LoRA arm's score: a quiet and a noisy training setup


def power_batches(sizes: Sizes = PAPER) -> list[Batch]:
    """Every claim at the paper's effect sizes; the LoRA claims at a quiet and a noisy seed-to-seed spread."""
    return [
        Batch("layers", "paper", sizes),
        Batch("layers", PAPER_CORRELATION, sizes, ("C7",), label=f"paper, r = {C7_PAPER_R:g}"),
        Batch("swap", "paper", sizes),
        *(
            Batch("lora", "paper", sizes, label=f"paper, seed sd {sd:g}", options=(("seed_sd", sd),))
            for sd in POWER_SEED_SDS
        ),
    ]


def _table(batches: Sequence[Batch], results: Sequence[dict[str, list]]) -> pd.DataFrame:
    rows = []
    for batch, outcomes in zip(batches, results, strict=True):
        for claim, values in outcomes.items():
            focus = focus_of(claim, batch.family, batch.scenario)
            rows.append(
                {
                    "claim": claim,
                    "scenario": batch.label or batch.scenario,
                    **rates(values),
                    "focus": "+".join(focus),
                    "sizes": batch.describe_sizes(),
                }
            )
    order = {claim: i for i, claim in enumerate(CLAIM_KEYS)}
    table = pd.DataFrame(rows).sort_values("claim", key=lambda c: c.map(order), kind="stable")
    return table.set_index(["claim", "scenario"])


def condition_table(batches: Sequence[Batch], results: Sequence[dict[str, list]]) -> pd.DataFrame:
    """Per claim, scenario and deciding condition: the shares of simulations in which that condition alone holds
    and is refuted, beside its registry entry's threshold key and the paper's effect (the power of each
    condition at the paper's effect sizes, for its provenance line)."""
    rows = []
    for batch, outcomes in zip(batches, results, strict=True):
        for claim, values in outcomes.items():
            entry = registry.claim(claim)
            names = dict.fromkeys(name for value in values for name, _ in value[2])
            for name in names:
                own = [dict(value[2]).get(name) for value in values]
                spec = entry.condition(name)
                rows.append(
                    {
                        "claim": claim,
                        "scenario": batch.label or batch.scenario,
                        "condition": name,
                        "holds": own.count(claims.HOLDS) / len(own),
                        "refuted": own.count(claims.REFUTED) / len(own),
                        "simulations": len(own),
                        "threshold": spec.threshold,
                        "paper_effect": spec.paper_effect,
                    }
                )
    return pd.DataFrame(rows).set_index(["claim", "scenario", "condition"])


@dataclass(frozen=True)
class Tables:
    """The calibration's measured tables (``tables``)."""

    null: pd.DataFrame  # holds per claim on data with no effect
    boundary: pd.DataFrame  # holds per claim with one condition exactly at its threshold (registry designs)
    power: pd.DataFrame  # outcomes per claim at the paper's effect sizes
    conditions: pd.DataFrame  # each deciding condition's own outcomes at the paper's effect sizes


def tables(
    simulations: int = 500,
    power_simulations: int = 100,
    seed: int = 0,
    sizes: Sizes = SMALL,
    paper_sizes: Sizes = PAPER,
    workers: int | None = None,
    boundary_simulations: dict[str, int] | None = None,
    depths: Sequence[int] = (),
    ratios: Sequence[float] = (WIDE_RATIO,),
) -> Tables:
    """Holds per claim on data with no effect and at each condition's boundary; outcomes per claim and per
    condition at the paper's effect sizes.

    Columns: the shares of holds / refuted / inconclusive verdicts, the share of simulations in which the
    ``focus`` conditions (those at the boundary) all hold, the number of simulations and the data sizes.
    ``boundary_simulations``: simulations per scenario or family at the boundary (default: ``simulations``);
    ``depths``: the layer counts of the boundary designs (``boundary_batches``); ``ratios``: the N/D of the null
    with fewer samples than dimensions.
    """
    null, boundary = null_batches(sizes, ratios), boundary_batches(sizes, depths)
    power = power_batches(paper_sizes)
    per_family = boundary_simulations or {}
    counts = [
        *([simulations] * len(null)),
        *(per_family.get(batch.scenario, per_family.get(batch.family, simulations)) for batch in boundary),
        *([power_simulations] * len(power)),
    ]
    results = run_batches([*null, *boundary, *power], counts, seed, workers=workers)
    split = (len(null), len(null) + len(boundary))
    return Tables(
        _table(null, results[: split[0]]),
        _table(boundary, results[split[0] : split[1]]),
        _table(power, results[split[1] :]),
        condition_table(power, results[split[1] :]),
    )


def format_table(table: pd.DataFrame) -> str:
    """A table of rates as plain text: shares as percentages."""
    shown = table.copy()
    for column in (*claims.OUTCOMES, "focus_holds"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if math.isnan(v) else f"{100 * v:.1f}%")
    return shown.to_string()
