"""Layer profiles: the per-layer metrics of one model, and of a base/SFT pair.

One model is in memory at a time. Its probe set is streamed in resumable
chunks: each chunk is one forward pass per sample, whose hooks keep the pooled
vector of every sample at every layer and the token-level metrics of the first
``token_samples`` samples, and is written to the cache as one safetensors file.
A killed run resumes at the first missing chunk; a finished profile is a cache
hit that loads no model at all.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors
from tqdm.auto import tqdm

from harness import cache, metrics
from harness.errors import BadInputError, NonFiniteError
from harness.measure import capture
from harness.measure.probing import lens_hits
from harness.measure.weights import weight_change_by_part
from harness.sources import layouts, models
from harness.sources.data import MAX_TOKENS, POOLED_SAMPLES, TOKEN_LEVEL_SAMPLES, ProbeSet, load_probe_set

PROFILE_FORMAT = 3  # bump when what a chunk holds, or how a metric is computed, changes
SAMPLE_METRICS = ("prompt_entropy", "curvature", "token_sparsity")
DATASET_METRICS = (
    "dataset_entropy",
    "effective_rank",
    "rank_deficiency",
    "condition_number",
    "spectral_norm",
    "pooled_sparsity",
)


class DegenerateStatesError(BadInputError):
    """A model whose hidden states leave a metric undefined (every sample's state the same, say)."""


class ActivationError(NonFiniteError):
    """A model produced NaN or infinite activations."""


@dataclass(frozen=True)
class ProfileOptions:
    """What a profile measures and how. Where the paper is silent, its literal equation is the default."""

    probe_set: str = "gsm8k-local"
    pooled_samples: int = POOLED_SAMPLES  # §4.1: 1,000 instances for pooled metrics
    token_samples: int = TOKEN_LEVEL_SAMPLES  # §4.1: 100 instances for token-level metrics
    max_tokens: int = MAX_TOKENS  # §4.1: T = 256
    alpha: float = 1.0  # matrix-entropy order; 1 is the von Neumann limit
    normalize_entropy: bool = True  # divide by log min(N, D): §4.1's log N whenever N <= D
    cka_center: bool = True  # eq. 6 centres the Gram matrices
    sparsity_eps: float = 0.01  # §4.1
    last_layer: str = "pre_norm"  # layer L before the final norm, like every other layer
    weight_modules: tuple[str, ...] = layouts.ATTENTION_MODULES  # Θ of eq. 1
    seed: int = 0
    dtype: str = "float32"
    batch_size: int = 8  # does not change results
    chunk_size: int = 250  # samples per resumable chunk; does not change results

    def __post_init__(self) -> None:
        if self.pooled_samples < 2:
            raise BadInputError("pooled_samples must be at least 2 (dataset metrics need two samples)")
        if not 0 <= self.token_samples <= self.pooled_samples:
            raise BadInputError(
                f"token_samples ({self.token_samples}) must lie between 0 and pooled_samples "
                f"({self.pooled_samples}): they are the pooled samples' first"
            )
        if not 0 <= self.alpha < math.inf:
            raise BadInputError(
                f"alpha, the order of the matrix entropy (eq. 2-3), must be 0 or above; got {self.alpha}"
            )
        if self.max_tokens < 3:
            raise BadInputError("max_tokens must be at least 3 (curvature needs three tokens)")
        if self.last_layer not in capture.LAST_LAYER_CHOICES:
            raise BadInputError(f"last_layer must be one of {capture.LAST_LAYER_CHOICES}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise BadInputError("batch_size and chunk_size must be positive")

    def result_fields(self) -> dict:
        """The options that change the numbers (the cache key), without batch and chunk sizes."""
        fields = dataclasses.asdict(self)
        fields.pop("batch_size")
        fields.pop("chunk_size")
        return fields


# --- capture of one model ------------------------------------------------------------


@dataclass
class _ChunkSink:
    """Receives every layer's states for the current batch and keeps per-sample results only."""

    n_layers: int
    token_ids: set[int]
    options: ProfileOptions
    norm: torch.nn.Module | None
    lm_head: torch.nn.Module
    label: str
    pooled: dict[int, list] = field(default_factory=dict)  # layer -> [(sample ids, (B, D) means) per batch]
    token_rows: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # sample -> metric -> (L+1,)
    batch: capture.Batch | None = None
    _masks: dict = field(default_factory=dict)  # device -> (bool mask (B, T), float mask (B, 1, T), counts (B, 1))
    _token_states: dict[int, list] = field(default_factory=dict)  # row -> each layer's (T, D) states

    def start(self, batch: capture.Batch) -> None:
        """A new batch: its masks are made once, not once per layer."""
        self.batch = batch
        self._masks.clear()
        self._token_states = {
            row: [None] * self.n_layers for row, sample in enumerate(batch.sample_ids) if sample in self.token_ids
        }

    def _mask(self, device: torch.device):
        if device not in self._masks:
            mask = self.batch.attention_mask.to(device).bool()
            self._masks[device] = (mask, mask[:, None, :].float(), mask.sum(dim=1, keepdim=True))
        return self._masks[device]

    def __call__(self, layer: int, states: torch.Tensor) -> None:
        batch = self.batch
        mask, weights, counts = self._mask(states.device)
        states32 = states.float()
        # the mean over real tokens only, as one batched product (no (B, T, D) temporary)
        pooled = torch.bmm(weights, states32)[:, 0] / counts  # (B, D)
        # a non-finite real token makes its sample's mean non-finite: the exact check runs only then
        if not torch.isfinite(pooled).all() and not torch.isfinite(states[mask]).all():
            raise ActivationError(
                f"{self.label}: layer {layer} produced NaN or infinite activations on probe "
                f"samples {batch.sample_ids}; check the checkpoint and the dtype"
            )
        self.pooled.setdefault(layer, []).append((batch.sample_ids, pooled.cpu()))
        for row in self._token_states:  # right-padded: a sample's real tokens come first
            self._token_states[row][layer] = states[row, : int(counts[row])].detach().clone()

    def finish(self) -> None:
        """The batch's forward pass is over: each token-level sample's metrics and logit lens, every layer at
        once (one batched decomposition per sample, one pass of the head over every layer's positions)."""
        if not self._token_states:
            return
        options = self.options
        stacks = [
            torch.stack([layer.to(layers[0].device) for layer in layers])  # (L + 1, T, D), model dtype
            for layers in self._token_states.values()
        ]
        # too-short samples have no value (NaN); the tables count the samples each mean rests on
        values = metrics.token_metrics(
            [stacked.float().cpu() for stacked in stacks],
            options.alpha,
            options.normalize_entropy,
            options.sparsity_eps,
        )
        lens_states, lens_targets, owners = [], [], []
        for index, (row, stacked) in enumerate(zip(self._token_states, stacks, strict=True)):
            record = self._record(self.batch.sample_ids[row])
            for name, table in values.items():
                record[name][:] = table[index].numpy()
            tokens = stacked.shape[1]
            lens_states.append(stacked[:, :-1].reshape(-1, stacked.shape[2]))  # every position with a next token
            lens_targets.append(self.batch.input_ids[row, 1:tokens].repeat(self.n_layers))
            owners.append(torch.arange(self.n_layers).repeat_interleave(tokens - 1) + index * self.n_layers)
        states, targets, owner = torch.cat(lens_states), torch.cat(lens_targets), torch.cat(owners)
        layer_of = owner % self.n_layers
        # the final norm goes on every layer but the last when that layer is already taken after it
        normed = (layer_of != self.n_layers - 1) | (self.options.last_layer != "final_norm")
        if normed.all():
            correct = lens_hits(states, targets, self.norm, self.lm_head)
        else:
            correct = torch.empty_like(targets, dtype=torch.bool)
            for use_norm in (True, False):
                where = normed if use_norm else ~normed
                correct[where] = lens_hits(
                    states[where.to(states.device)], targets[where], self.norm if use_norm else None, self.lm_head
                )
        rows = len(self._token_states) * self.n_layers
        hits = torch.zeros(rows, dtype=torch.long).index_add_(0, owner, correct.long())
        totals = torch.bincount(owner, minlength=rows)
        for index, row in enumerate(self._token_states):
            record = self._record(self.batch.sample_ids[row])
            span = slice(index * self.n_layers, (index + 1) * self.n_layers)
            record["probe_hits"][:] = hits[span].numpy()
            record["probe_counts"][:] = totals[span].numpy()
        self._token_states = {}

    def _record(self, sample: int) -> dict[str, np.ndarray]:
        if sample not in self.token_rows:
            names = (*SAMPLE_METRICS, "probe_hits", "probe_counts")
            self.token_rows[sample] = {name: np.full(self.n_layers, np.nan) for name in names}
        return self.token_rows[sample]


def _chunk_path(directory: Path, index: int) -> Path:
    return directory / f"chunk-{index:05d}.safetensors"


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass
class ModelRun:
    """The streamed capture of one model over one probe set, stored as chunk files."""

    label: str
    directory: Path
    n_samples: int
    n_layers: int  # L + 1 (layer 0 is the embedding output)
    token_samples: int
    fingerprint: str
    forward_samples: int = 0  # samples sent through the model in this process (0 on a cache hit)
    forward_calls: int = 0
    seconds: float = 0.0

    def chunk_files(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.safetensors"))

    def pooled(self, layer: int) -> torch.Tensor:
        """(N, D) mean-pooled states of every sample at ``layer``, in probe-set order."""
        parts = []
        for path in self.chunk_files():
            with safe_open(path, framework="pt") as handle:
                parts.append(handle.get_tensor(f"pooled.{layer}"))
        return torch.cat(parts)

    def sample_metric(self, name: str) -> np.ndarray:
        """(token_samples, L+1) per-sample values of a token-level metric."""
        parts = []
        for path in self.chunk_files():
            with safe_open(path, framework="pt") as handle:
                if name in handle.keys():
                    parts.append(handle.get_tensor(name).numpy())
        return np.concatenate(parts) if parts else np.empty((0, self.n_layers))


def _run_directory(ref: models.ModelRef, probe: ProbeSet, options: ProfileOptions) -> tuple[Path, str]:
    fingerprint = models.weights_fingerprint(ref)
    key = cache.stable_hash(
        {
            "model": models.files_fingerprint(ref),
            "probe": probe.digest(),
            "options": options.result_fields(),
            "format": PROFILE_FORMAT,
        }
    )
    return cache.cache_root() / "profiles" / key, fingerprint


def capture_model(
    ref: models.ModelRef,
    probe: ProbeSet,
    options: ProfileOptions,
    label: str,
    device: str = "auto",
    progress: bool = True,
) -> ModelRun:
    """Stream ``probe`` through one model, chunk by chunk, resuming from the cache."""
    directory, fingerprint = _run_directory(ref, probe, options)
    chunks = _chunks(len(probe), options.chunk_size)
    missing = [i for i in range(len(chunks)) if not _chunk_path(directory, i).is_file()]
    run = ModelRun(
        label, directory, len(probe), models.layer_count(ref) + 1, min(options.token_samples, len(probe)), fingerprint
    )
    if not missing:
        return run
    started = time.perf_counter()
    tokenizer = models.load_tokenizer(ref)
    model = models.load_model(ref, dtype=options.dtype, device=device)
    encoded = capture.encode(tokenizer, probe.texts, options.max_tokens)
    norm, lm_head = capture.final_norm(model), model.get_output_embeddings()
    decoder = model.get_decoder()

    def count(module, args, kwargs):
        run.forward_calls += 1
        run.forward_samples += int(kwargs["input_ids"].shape[0])

    counter = decoder.register_forward_pre_hook(count, with_kwargs=True)
    bar = tqdm(total=sum(len(chunks[i]) for i in missing), desc=f"profile {label}", unit="sample", disable=not progress)
    sink = None
    try:
        for index in missing:
            sink = _ChunkSink(run.n_layers, set(range(run.token_samples)), options, norm, lm_head, label)
            sample_ids = list(chunks[index])
            with capture.layer_hooks(model, sink, options.last_layer):
                for batch in capture.batches(
                    [encoded[i] for i in sample_ids], sample_ids, options.batch_size, tokenizer.pad_token_id
                ):
                    sink.start(batch)
                    capture.forward_only(model, batch)
                    sink.finish()
                    bar.update(len(batch.sample_ids))
            cache.write_bytes_atomic(_chunk_path(directory, index), _chunk_bytes(sink, sample_ids, encoded))
    finally:
        counter.remove()
        bar.close()
        alive = weakref.ref(model)
        del model, norm, lm_head, decoder, sink
        _release(alive)
    run.seconds = time.perf_counter() - started
    return run


def _release(alive: weakref.ref) -> None:
    """Make sure the model is freed before the next one loads: reference counting has done it when nothing else
    held it; a full garbage collection (a fraction of a second) runs only when a reference cycle keeps it."""
    if alive() is not None:
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _chunk_bytes(sink: _ChunkSink, sample_ids: list[int], encoded: list[list[int]]) -> bytes:
    tensors = {}
    for layer in range(sink.n_layers):  # batches are ordered by length: back into sample order
        ids = [sample for batch_ids, _ in sink.pooled[layer] for sample in batch_ids]
        means = torch.cat([batch_means for _, batch_means in sink.pooled[layer]])
        position = {sample: index for index, sample in enumerate(ids)}
        tensors[f"pooled.{layer}"] = means[torch.tensor([position[s] for s in sample_ids])].contiguous()
    tensors["sample_ids"] = torch.tensor(sample_ids)
    tensors["tokens"] = torch.tensor([len(encoded[s]) for s in sample_ids])
    token_ids = [s for s in sample_ids if s in sink.token_rows]
    if token_ids:
        for name in sink.token_rows[token_ids[0]]:
            tensors[name] = torch.tensor(np.stack([sink.token_rows[s][name] for s in token_ids]))
    return save_tensors(tensors)


# --- tables ------------------------------------------------------------------------------


def _nan_mean(values: np.ndarray) -> tuple[float, int]:
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if finite.size else math.nan), int(finite.size)


# an intrinsic table's column for each of ``metrics.spectral_summary``'s values
SPECTRAL_COLUMNS = {
    "dataset_entropy": "entropy",
    "effective_rank": "effective_rank",
    "rank_deficiency": "rank_deficiency",
    "condition_number": "condition_number",
    "spectral_norm": "spectral_norm",
    "pooled_sparsity": "sparsity",
}


def intrinsic_table(run: ModelRun, options: ProfileOptions, spectral: bool = True) -> pd.DataFrame:
    """Layer × intrinsic metric for one model (the quantities of Fig. 2 and Fig. 3).

    ``spectral=False`` leaves the pooled matrices' spectral metrics NaN: a simulation of claims that read only
    the pair series (``calibration.simulated_pair``) skips the one SVD per layer they do not need."""
    sample_values = {name: run.sample_metric(name) for name in (*SAMPLE_METRICS, "probe_hits", "probe_counts")}
    rows = []
    for layer in range(run.n_layers):
        row: dict[str, float] = {"layer": layer}
        if spectral:
            summary = metrics.spectral_summary(
                run.pooled(layer), options.alpha, options.normalize_entropy, options.sparsity_eps
            )
            row.update({column: summary[key] for column, key in SPECTRAL_COLUMNS.items()})
        else:
            row.update(dict.fromkeys(SPECTRAL_COLUMNS, math.nan))
        for name in SAMPLE_METRICS:
            row[name], row[f"{name}_samples"] = _nan_mean(sample_values[name][:, layer])
        counts = sample_values["probe_counts"][:, layer]
        total = np.nansum(counts)
        row["probe_accuracy"] = float(np.nansum(sample_values["probe_hits"][:, layer]) / total) if total else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def pair_table(
    base: ModelRun,
    sft: ModelRun,
    base_table: pd.DataFrame,
    sft_table: pd.DataFrame,
    weight_changes: dict[int, float],
    options: ProfileOptions,
) -> pd.DataFrame:
    """Layer × pair metric: CKA (eq. 6), cosine (eq. 7), mean shift, ΔW (eq. 1), eqs. 8-9 differences."""
    if base.n_layers != sft.n_layers or base.n_samples != sft.n_samples:
        raise ValueError("base and SFT runs differ in layers or samples; they must share probe set and depth")
    # eq. 9: difference of dataset-level values, aligned on the layer (one subtraction per column, not per cell)
    dataset_deltas = {
        name: (sft_table[name] - base_table[name]).to_dict() for name in (*DATASET_METRICS, "probe_accuracy")
    }
    rows = []
    for layer in range(base.n_layers):
        x, y = base.pooled(layer), sft.pooled(layer)
        row = {
            "layer": layer,
            "cka": metrics.linear_cka(x, y, center=options.cka_center),
            "cosine": metrics.cosine_similarity(x, y),
            "mean_shift": metrics.mean_shift(x, y),
            "weight_change": weight_changes.get(layer, math.nan),
        }
        for name in SAMPLE_METRICS:  # eq. 8: mean over samples of the per-sample difference
            diff = sft.sample_metric(name)[:, layer] - base.sample_metric(name)[:, layer]
            row[f"delta_{name}"], _ = _nan_mean(diff)
        for name, delta in dataset_deltas.items():
            row[f"delta_{name}"] = float(delta[layer])
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


# --- pairs ---------------------------------------------------------------------------------


@dataclass
class PairProfile:
    """Everything measured on one pair: three tables, the runs behind them, and how they were made."""

    base: pd.DataFrame
    sft: pd.DataFrame
    pair: pd.DataFrame
    meta: dict
    base_run: ModelRun | None = None
    sft_run: ModelRun | None = None


def pair_weight_change(pair: models.ResolvedPair, modules) -> dict[str, dict[int, float]]:
    """Eq. 1 per layer (and a mixture of experts' router and experts): from the adapter alone when the SFT
    is one (ΔW = scale·B·A), else streamed from the two checkpoints."""
    if pair.adapter:
        from harness.sources import adapters

        return adapters.adapter_weight_change(pair.adapter_dir, models.checkpoint_directory(pair.base), modules)
    return weight_change_by_part(models.checkpoint_directory(pair.base), models.checkpoint_directory(pair.sft), modules)


def profile_pair(
    pair: models.ResolvedPair, options: ProfileOptions, device: str = "auto", progress: bool = True
) -> PairProfile:
    """Profile base, then SFT (one model in memory at a time), then the pair metrics."""
    started = time.perf_counter()
    probe = load_probe_set(options.probe_set, options.pooled_samples, options.seed)
    runs = {
        label: capture_model(ref, probe, options, label, device=device, progress=progress)
        for label, ref in (("base", pair.base), ("sft", pair.sft))
    }
    captured = time.perf_counter()
    try:
        tables = {label: intrinsic_table(run, options) for label, run in runs.items()}
    except metrics.DegenerateInputError as error:  # the model's states, not the harness: the user's input
        raise DegenerateStatesError(f"{pair.spec.name}: a layer's hidden states are degenerate ({error})") from error
    changes = pair_weight_change(pair, options.weight_modules)
    pair_metrics = pair_table(runs["base"], runs["sft"], tables["base"], tables["sft"], changes["eq1"], options)
    for part in ("router", "experts"):  # a mixture of experts: its routing and experts apart from eq. 1
        if part in changes:
            pair_metrics[f"{part}_change"] = [changes[part].get(layer, math.nan) for layer in pair_metrics.index]
    base_config, sft_config = models.load_config(pair.base), models.load_config(pair.sft)
    meta = {
        "pair": {
            "name": pair.spec.name,
            "family": pair.spec.family,
            # a built pair is named by its builder, not by a folder of this machine's cache
            "base": (pair.spec.base if pair.spec.is_built_locally else pair.base).describe(),
            "sft": (pair.spec.sft if pair.spec.is_built_locally else pair.sft).describe(),
            "base_weights": runs["base"].fingerprint,
            "sft_weights": runs["sft"].fingerprint,
            "model_type": base_config.model_type,
            "layout": layouts.layout_of(base_config).family,
            **({"vocabulary": note} if (note := models.vocabulary_note(base_config, sft_config)) else {}),
            **({"sft_adapter": pair.adapter} if pair.adapter else {}),
        },
        "probe": {
            "name": probe.name,
            "source": probe.source,
            "digest": probe.digest(),
            "samples": len(probe),
            "seed": probe.seed,
        },
        "options": dataclasses.asdict(options),
        "layers": {
            "count": runs["base"].n_layers,
            "numbering": "0 = embedding output, l = output of decoder "
            f"block l, all before the final norm (last_layer={options.last_layer})",
        },
        "forward": {
            label: {"samples": run.forward_samples, "calls": run.forward_calls, "seconds": round(run.seconds, 3)}
            for label, run in runs.items()
        },
        "timings": {
            "capture_seconds": round(captured - started, 3),
            "tables_seconds": round(time.perf_counter() - captured, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
        },
        "device": device,
    }
    return PairProfile(tables["base"], tables["sft"], pair_metrics, meta, runs["base"], runs["sft"])
