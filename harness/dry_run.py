"""A dry run of a pair at its real size, without its weights: what each stage costs before GPU-hours are spent.

The registered pairs' architectures ship as small JSON files (``harness/shapes``,
no weights). A dry run builds a random-initialised base of that exact shape and
an "SFT" that differs from it by a planted, depth-growing perturbation, saves
both as sharded safetensors in the cache (one model in memory at a time), then
runs every stage of the harness at reduced sizes: the profile, the weight change,
one whole-segment swap, a few lm-eval items, a few LoRA steps of the full-depth
and of a mid-block arm. Each stage reports its wall time, peak host memory and
peak GPU memory, and the time per unit it measured is scaled to the sizes the
claims config asks for, as an estimate of the full run of
``pytest suites -m PAIR --tune PAIR``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from harness import cache, depth
from harness.errors import BadInputError
from harness.measure.capture import decoder_layers
from harness.sources import models
from harness.sources.layouts import text_config

SHAPE_FORMAT = 2  # bump when how a shape pair is built changes
TOKENIZER_VOCAB = 1024  # the dry run's own tokenizer (trained on local text); the model keeps its real vocabulary
PLANTED_CHANGE = (0.002, 0.02)  # relative size of the SFT perturbation at the first and at the last layer
MIN_DEPTH_LAYERS = 3  # the paper's first 20%, middle and last 20% need at least one layer each


class DoesNotFitError(BadInputError):
    """The shape needs more memory or disk than this machine has."""


# --- shapes ------------------------------------------------------------------------------------


def shape_names() -> list[str]:
    return sorted(
        path.name.removesuffix(".json")
        for path in resources.files("harness").joinpath("shapes").iterdir()
        if path.name.endswith(".json")
    )


def load_shape(name_or_path: str) -> tuple[str, dict]:
    """A registered pair's architecture (``olmo2_7b``) or any config.json-like file, as (name, config dict)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            shape = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError) as error:
            raise BadInputError(f"the shape {name_or_path} is not valid JSON ({error})") from None
        if not isinstance(shape, dict) or not isinstance(shape.get("model_type"), str):
            raise BadInputError(f"the shape {name_or_path} is not a config.json: no model_type in a JSON object")
        return path.stem, shape
    if name_or_path not in shape_names():
        raise BadInputError(
            f"no shape {name_or_path!r}: the shipped shapes are {', '.join(shape_names())}, or name a config.json file"
        )
    text = resources.files("harness").joinpath("shapes", f"{name_or_path}.json").read_text()
    return name_or_path, json.loads(text)


def model_config(shape: dict, tokenizer):
    """The transformers config of ``shape``, with the dry run tokenizer's special tokens."""
    from transformers import AutoConfig

    values = {k: v for k, v in shape.items() if k != "model_type"}
    values.update(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if shape["model_type"] not in CONFIG_MAPPING:
        raise BadInputError(
            f"the shape's model_type {shape['model_type']!r} is not one transformers {transformers.__version__} knows"
        )
    try:
        config = AutoConfig.for_model(shape["model_type"], **values)
    except Exception as error:  # transformers' own checks of a config (widths that do not fit, say): input, not a bug
        raise BadInputError(
            f"the shape is not a {shape['model_type']} config transformers can build "
            f"({type(error).__name__}: {str(error).strip().splitlines()[-1].strip()})"
        ) from None
    models.check_supported_layout(config, f"shape {shape['model_type']}")
    vocabulary = text_config(config).vocab_size
    if vocabulary < len(tokenizer):
        raise BadInputError(
            f"the shape's vocabulary ({vocabulary}) is smaller than the dry run's tokenizer ({len(tokenizer)})"
        )
    return config


def parameter_count(config) -> int:
    """Parameters of the shape, counted on the meta device (nothing is allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --- memory ------------------------------------------------------------------------------------


def _rss_bytes() -> tuple[int, int]:
    """Resident memory of this process: (all of it, the anonymous part). Files read through a memory map
    (safetensors) count in the first as the pages are touched, but they are the page cache's, not allocations:
    what a stage allocates is the second's growth."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["RssAnon"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak


def available_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class StageFigures:
    name: str
    seconds: float = 0.0
    peak_host_mib: float = 0.0  # resident memory of the process at its highest during the stage
    host_above_start_mib: float = 0.0  # what the stage allocated: its highest anonymous memory above the start
    peak_gpu_mib: float | None = None
    detail: dict = field(default_factory=dict)


@contextmanager
def measured(name: str, interval: float = 0.02) -> Iterator[StageFigures]:
    """Wall time, peak resident memory (sampled every ``interval`` s) and peak GPU memory of a block."""
    figures = StageFigures(name)
    start_anonymous = _rss_bytes()[1]
    peak = [0, 0]
    stop = threading.Event()

    def sample():
        while True:
            total, anonymous = _rss_bytes()
            peak[0], peak[1] = max(peak[0], total), max(peak[1], anonymous)
            if stop.wait(interval):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    sampler.start()
    try:
        yield figures
    finally:
        stop.set()
        sampler.join()
        figures.seconds = time.perf_counter() - started
        figures.peak_host_mib = peak[0] / 2**20
        figures.host_above_start_mib = max(0, peak[1] - start_anonymous) / 2**20
        if torch.cuda.is_available():
            figures.peak_gpu_mib = torch.cuda.max_memory_allocated() / 2**20


# --- the shape pair ------------------------------------------------------------------------------


@functools.cache
def _tokenizer(size: int = TOKENIZER_VOCAB):
    from harness.sources import corpus
    from harness.sources.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(corpus.pretraining_paragraphs(), size)


SMALLEST_TOKENIZER = 300  # a byte-level BPE needs its 256 byte symbols and a few merges


def _vocabulary(shape: dict) -> int | None:
    return shape.get("vocab_size", (shape.get("text_config") or {}).get("vocab_size"))


def fit_vocabulary(shape: dict) -> tuple[dict, str | None]:
    """The shape a dry run builds, and a note when it differs: a vocabulary smaller than any byte-level
    tokenizer (a toy config's 64 or 256 tokens) is raised to the dry run's own."""
    vocabulary = _vocabulary(shape)
    if vocabulary is None or vocabulary >= SMALLEST_TOKENIZER:
        return shape, None
    note = f"vocabulary raised from {vocabulary} to {TOKENIZER_VOCAB} tokens for the dry run's tokenizer"
    if "text_config" in shape and "vocab_size" not in shape:
        return {**shape, "text_config": {**shape["text_config"], "vocab_size": TOKENIZER_VOCAB}}, note
    return {**shape, "vocab_size": TOKENIZER_VOCAB}, note


def shape_tokenizer(shape: dict):
    """The dry run's tokenizer for ``shape``: its own 1,024 tokens, or the shape's vocabulary when smaller."""
    vocabulary = _vocabulary(shape)
    return _tokenizer(TOKENIZER_VOCAB if vocabulary is None else min(TOKENIZER_VOCAB, vocabulary))


def _initialise(model, generator: torch.Generator, std: float) -> None:
    """Normal(0, std) weights and unit norms, written in place (as fast as drawing the numbers)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.fill_(1.0 if "norm" in name else 0.0)
            else:
                parameter.copy_(
                    torch.randn(parameter.shape, generator=generator, dtype=torch.float32).mul_(std).to(parameter.dtype)
                )


def planted_change(layer: int, n_layers: int) -> float:
    """The SFT's relative perturbation of 0-based decoder layer ``layer``: small and flat, then rising (a J)."""
    first, last = PLANTED_CHANGE
    position = layer / max(1, n_layers - 1)
    return first + (last - first) * position**3


def _perturb(model, generator: torch.Generator) -> None:
    layers = decoder_layers(model)
    with torch.no_grad():
        for index, layer in enumerate(layers):
            scale = planted_change(index, len(layers))
            for parameter in layer.parameters():
                if parameter.ndim >= 2:  # every matrix, a mixture's router and stacked experts included
                    # noise of exactly ``scale`` times the matrix's norm: eq. 1 reads the planted value back
                    noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                    noise.mul_(scale * parameter.float().norm() / noise.norm())
                    parameter.add_(noise.to(parameter.dtype))


def shape_pair_directory(name: str, shape: dict, dtype: str) -> Path:
    key = cache.stable_hash(
        {"format": SHAPE_FORMAT, "shape": shape, "dtype": dtype, "vocab": TOKENIZER_VOCAB, "planted": PLANTED_CHANGE}
    )
    return cache.cache_root() / "dry-run" / f"{name}-{key}"


def check_fits(config, dtype: str, directory: Path, device: str) -> dict:
    """Refuse a shape whose one model does not fit in this machine's memory, or whose two do not fit on disk."""
    parameters = parameter_count(config)
    bytes_per = torch.empty((), dtype=models.resolve_dtype(dtype)).element_size()
    model_bytes = parameters * bytes_per
    need = {"parameters": parameters, "model_gib": round(model_bytes / 2**30, 2)}
    memory = available_memory_bytes()
    if device != "cuda" and memory is not None and model_bytes * 1.3 > memory:
        raise DoesNotFitError(
            f"one model of this shape needs about {model_bytes * 1.3 / 2**30:.1f} GiB of host "
            f"memory in {dtype}; {memory / 2**30:.1f} GiB are available"
        )
    if torch.cuda.is_available() and device != "cpu":
        total = sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
        if model_bytes * 1.2 > total:
            raise DoesNotFitError(
                f"one model of this shape needs about {model_bytes * 1.2 / 2**30:.1f} GiB of GPU "
                f"memory in {dtype}; the GPUs have {total / 2**30:.1f} GiB"
            )
    directory.parent.mkdir(parents=True, exist_ok=True)
    built = (directory / "base").is_dir() and (directory / "sft").is_dir()
    free = shutil.disk_usage(directory.parent).free
    if not built and 2.1 * model_bytes > free:
        raise DoesNotFitError(
            f"the two checkpoints of this shape need about {2.1 * model_bytes / 2**30:.1f} GiB "
            f"of disk in {directory.parent}; {free / 2**30:.1f} GiB are free"
        )
    return need


def build_shape_pair(
    name: str, shape: dict, dtype: str = "bfloat16", shard_size: str = "2GB", progress: bool = True
) -> tuple[Path, Path]:
    """The base and SFT checkpoints of ``shape`` in the cache (built once; one model in memory at a time)."""
    from transformers import AutoModelForCausalLM

    directory = shape_pair_directory(name, shape, dtype)
    base_dir, sft_dir = directory / "base", directory / "sft"
    if cache.is_complete(base_dir) and cache.is_complete(sft_dir):
        return base_dir, sft_dir
    tokenizer = shape_tokenizer(shape)
    config = model_config(shape, tokenizer)
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=models.resolve_dtype(dtype))
    model = model.to_empty(device="cpu")
    _initialise(model, generator, config.initializer_range)
    for side, target in (("base", base_dir), ("sft", sft_dir)):
        if side == "sft":
            _perturb(model, generator)
        with cache.atomic_directory(target) as scratch:
            model.save_pretrained(scratch, max_shard_size=shard_size)
            tokenizer.save_pretrained(scratch)
    del model
    return base_dir, sft_dir


# --- the stages ------------------------------------------------------------------------------------


@dataclass
class DryRun:
    name: str
    shape: dict
    dtype: str
    device: str
    stages: list[StageFigures] = field(default_factory=list)
    estimate: dict[str, float] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    def stage(self, name: str) -> StageFigures:
        return next(stage for stage in self.stages if stage.name == name)


@dataclass(frozen=True)
class Sizes:
    """The reduced sizes of a dry run (the full run's come from the claims config)."""

    profile_samples: int = 16
    token_samples: int = 4
    swap_items: int = 4
    eval_items: int = 2
    eval_tokens: int = 8
    lora_steps: int = 3
    lora_batch: int = 2


def run_dry(
    name_or_path: str,
    dtype: str = "bfloat16",
    device: str = "auto",
    sizes: Sizes = Sizes(),
    pair_name: str | None = None,
    progress: bool = True,
    on_stage: Callable[[StageFigures], None] | None = None,
) -> DryRun:
    """Build the shape pair (or find it cached) and measure every stage at ``sizes``."""
    from harness import config as claims_config

    name, shape = load_shape(name_or_path)
    shape, vocabulary_note = fit_vocabulary(shape)
    result = DryRun(name, shape, dtype, device)
    if vocabulary_note:
        result.facts["note"] = vocabulary_note
    tokenizer = shape_tokenizer(shape)
    directory = shape_pair_directory(name, shape, dtype)
    result.facts.update(check_fits(model_config(shape, tokenizer), dtype, directory, device))
    thresholds = claims_config.thresholds_for(pair_name or name)

    def done(figures: StageFigures) -> None:
        result.stages.append(figures)
        if on_stage:
            on_stage(figures)

    with measured("build") as figures:
        base_dir, sft_dir = build_shape_pair(name, shape, dtype, progress=progress)
        figures.detail["checkpoints"] = str(directory)
    done(figures)
    spec = models.custom_pair(str(base_dir), str(sft_dir), name=f"dry-run:{name}", dtype=dtype)
    resolved = models.resolve_pair(spec, progress=progress)
    n_layers = models.layer_count(resolved.base)
    for stage in (_profile_stage, _weight_change_stage, _swap_stage, _eval_stage, _lora_stage):
        done(stage(resolved, n_layers, thresholds, sizes, dtype, device, progress))
    result.estimate = estimate(result, thresholds, n_layers)
    return result


def _profile_stage(resolved, n_layers, thresholds, sizes, dtype, device, progress) -> StageFigures:
    from harness.measure.profile import ProfileOptions, capture_model
    from harness.sources.data import load_probe_set

    options = ProfileOptions(pooled_samples=sizes.profile_samples, token_samples=sizes.token_samples, dtype=dtype)
    probe = load_probe_set(options.probe_set, options.pooled_samples, seed=options.seed)
    with _scratch_cache(), measured("profile") as figures:  # measured afresh, never read from the cache
        run = capture_model(resolved.base, probe, options, "base", device=device, progress=progress)
    figures.detail.update(samples=run.forward_samples, seconds_per_sample=figures.seconds / max(1, run.n_samples))
    return figures


@contextmanager
def _scratch_cache() -> Iterator[None]:
    import tempfile

    previous = os.environ.get("HARNESS_CACHE")
    with tempfile.TemporaryDirectory(prefix="harness-dry-run-") as scratch:
        os.environ["HARNESS_CACHE"] = scratch
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("HARNESS_CACHE", None)
            else:
                os.environ["HARNESS_CACHE"] = previous


def _weight_change_stage(resolved, n_layers, thresholds, sizes, dtype, device, progress) -> StageFigures:
    from harness.measure.weights import weight_change_by_part
    from harness.sources.layouts import ATTENTION_MODULES, MLP_MODULES

    base_dir, sft_dir = (models.checkpoint_directory(ref) for ref in (resolved.base, resolved.sft))
    with measured("weight change") as figures:
        parts = weight_change_by_part(base_dir, sft_dir, (*ATTENTION_MODULES, *MLP_MODULES), relative=True)
    change = parts["eq1"]
    planted = {row: planted_change(depth.layer_of_row(row), n_layers) for row in change}
    # every matrix of a layer got the same relative perturbation: Q/K/V/O and MLP, router and experts alike
    worst = max(abs(values[row] - planted[row]) / planted[row] for values in parts.values() for row in values)
    figures.detail.update(
        relative_change_first=change[1],
        relative_change_last=change[n_layers],
        planted_first=planted[1],
        planted_last=planted[n_layers],
        worst_relative_error=worst,
        parts=sorted(parts),
    )
    return figures


def _swap_stage(resolved, n_layers, thresholds, sizes, dtype, device, progress) -> StageFigures:
    from harness.depth import segments
    from harness.measure import evaluate, swap
    from harness.sources import synthetic

    records = [synthetic.gsm8k_record(0, "test", i) for i in range(sizes.swap_items)]
    count = min(5, n_layers)
    segment = segments(n_layers, count)[count // 2]
    model = models.load_model(resolved.base, dtype=dtype, device=device)
    tokenizer = models.load_tokenizer(resolved.base)
    with measured("swap") as figures:
        started = time.perf_counter()
        with swap.swapped(model, models.checkpoint_directory(resolved.sft), segment):
            copied = time.perf_counter() - started
            evaluate.answer_log_likelihood(model, tokenizer, records)
    figures.detail.update(
        layers=segment, copy_seconds=copied, seconds_per_item=(figures.seconds - copied) / len(records)
    )
    del model
    return figures


def _eval_stage(resolved, n_layers, thresholds, sizes, dtype, device, progress) -> StageFigures:
    from harness.measure import evaluate

    model = models.load_model(resolved.sft, dtype=dtype, device=device)
    tokenizer = models.load_tokenizer(resolved.sft)
    options = evaluate.EvalOptions(limit=sizes.eval_items, num_fewshot=0, max_gen_toks=sizes.eval_tokens)
    with measured("lm-eval") as figures:
        evaluate.lm_eval_scores(model, tokenizer, ["gsm8k_local"], options)
    figures.detail.update(
        items=sizes.eval_items,
        generated_tokens=sizes.eval_tokens,
        seconds_per_item_token=figures.seconds / (sizes.eval_items * sizes.eval_tokens),
    )
    del model
    return figures


def _lora_stage(resolved, n_layers, thresholds, sizes, dtype, device, progress) -> StageFigures:
    from harness import training
    from harness.lora import runs as lora_runs
    from harness.lora import tuning

    settings = lora_runs.TuneSettings.from_thresholds(thresholds, dtype=dtype)
    tokenizer = models.load_tokenizer(resolved.base)
    examples = lora_runs.supervised_examples(lora_runs.training_records("gsm8k_local", 16), tokenizer)
    arms = {"full": settings.arm("1" * 5, list(range(n_layers)), n_layers)}
    if n_layers >= MIN_DEPTH_LAYERS:  # a mid-block needs a first, a middle and a last group of layers
        arms["mid-block"] = settings.arm("midblock", tuning.middle_block(n_layers), n_layers)
    step_seconds, figures_by_arm = {}, {}
    with measured("LoRA") as figures:
        for label, arm in arms.items():
            model = models.load_model(resolved.base, dtype=dtype, device=device)
            wrapped = tuning.apply_arm(model, arm)
            device_of = model.get_input_embeddings().weight.device
            sampler = training.supervised_sampler(examples, sizes.lora_batch, tokenizer.pad_token_id)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            training.train(
                wrapped,
                lambda g, s=sampler, d=device_of: {k: v.to(d) for k, v in s(g).items()},
                training.Schedule(sizes.lora_steps, settings.learning_rate),
                seed=0,
                description=f"dry run LoRA {label}",
                progress=progress,
            )
            step_seconds[label] = (time.perf_counter() - started) / sizes.lora_steps
            figures_by_arm[label] = {
                "seconds_per_step": step_seconds[label],
                "trainable": tuning.trainable_parameters(wrapped),
                "peak_gpu_mib": (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None),
            }
            del wrapped, model
    figures.detail.update(
        batch=sizes.lora_batch,
        arms=figures_by_arm,
        seconds_per_example=step_seconds["full"] / sizes.lora_batch,
        **(
            {}
            if "mid-block" in arms
            else {"mid_block": f"not measured: needs at least {MIN_DEPTH_LAYERS} decoder layers"}
        ),
    )
    return figures


STAGES = {
    "profile": _profile_stage,
    "weight change": _weight_change_stage,
    "swap": _swap_stage,
    "lm-eval": _eval_stage,
    "LoRA": _lora_stage,
}

_FRESH_STAGE = """
import json, sys
from harness import config, dry_run
from harness.sources import models
name, base, sft, dtype, device, sizes = json.loads(sys.argv[1])
resolved = models.resolve_pair(models.custom_pair(base, sft, dtype=dtype), progress=False)
n_layers = models.layer_count(resolved.base)
start = dry_run._rss_bytes()
figures = dry_run.STAGES[name](resolved, n_layers, config.thresholds_for("custom"), dry_run.Sizes(**sizes), dtype,
                               device, False)
print(json.dumps({**vars(figures), "process_start_mib": start[0] / 2**20}))
"""


def stage_in_fresh_process(
    name: str,
    base_dir: Path,
    sft_dir: Path,
    dtype: str = "bfloat16",
    device: str = "cpu",
    sizes: Sizes = Sizes(),
    threads: int | None = None,
):
    """One stage in a process of its own, so that its peak memory is its own (not what earlier stages left)."""
    import dataclasses
    import subprocess
    import sys

    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    payload = json.dumps([name, str(base_dir), str(sft_dir), dtype, device, dataclasses.asdict(sizes)])
    return subprocess.Popen(
        [sys.executable, "-c", _FRESH_STAGE, payload],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def fresh_stage_result(process) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"a dry-run stage failed in its own process:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --- the estimate --------------------------------------------------------------------------------

FULL_TASK_ITEMS = {"gsm8k": 1319, "mmlu": 14042}  # test splits scored when no limit is set


def _task_items(task: str, limit: int | None) -> int:
    full = FULL_TASK_ITEMS.get(task.removesuffix("_local"), 1000)
    return full if limit is None else min(limit, full)


def estimate(result: DryRun, thresholds: dict, n_layers: int) -> dict[str, float]:
    """Seconds of each part of ``pytest suites -m PAIR --tune PAIR`` at the claims config's sizes, from the
    times per unit the stages measured (each unit's cost taken as constant: a first-order estimate)."""
    from harness.sources.data import POOLED_SAMPLES

    profile = result.stage("profile").detail["seconds_per_sample"]
    swap = result.stage("swap").detail
    per_token = result.stage("lm-eval").detail["seconds_per_item_token"]
    lora = result.stage("LoRA").detail
    from harness.lora import plan as lora_plan
    from harness.lora import runs as lora_runs

    c3, evaluation = thresholds["C3"], thresholds["evaluation"]
    settings = lora_runs.TuneSettings.from_thresholds(thresholds, dtype=result.dtype)
    gen_tokens = evaluation["max_gen_toks"] or 256
    hybrids = 1 + sum(m for m in c3["segment_counts"] if m <= n_layers)
    generated = sum(_task_items(task, evaluation["limit"]) for task in evaluation["tasks"] if "mmlu" not in task)
    choices = sum(4 * _task_items(task, evaluation["limit"]) for task in evaluation["tasks"] if "mmlu" in task)
    counts = [m for m in thresholds["C4"]["inverted_u_counts"] if m <= n_layers]
    try:
        arms = len(lora_plan.plan_arms(n_layers, thresholds, settings, segment_counts=counts).arms) + 1  # + finder
    except BadInputError:  # fewer layers than the study's M = 5 masks: no study to estimate
        arms = math.nan
    runs = arms * len(settings.seeds)
    step = lora["seconds_per_example"] * settings.batch_size
    per_item = swap["seconds_per_item"]  # one forward pass over a short text: likelihood and retention alike
    scoring = (
        settings.eval_limit * (settings.max_gen_toks or 256) * per_token
        + (settings.likelihood_items + settings.retention_samples * len(settings.retention_sets)) * per_item
    )
    parts = {
        "profile (2 models)": 2 * POOLED_SAMPLES * profile,
        "weight change": result.stage("weight change").seconds,
        "layer swaps (2 directions)": 2
        * (hybrids * c3["items"] * swap["seconds_per_item"] + (hybrids - 1) * swap["copy_seconds"]),
        # generation (GSM8K) costs per generated token; multiple choice (MMLU) one scored text per choice
        "lm-eval (2 models)": 2 * (generated * gen_tokens * per_token + choices * per_item),
        f"LoRA study ({runs:.0f} runs)": runs * (settings.steps * step + scoring),
    }
    parts["total"] = sum(parts.values())
    return {key: round(value, 1) if math.isfinite(value) else math.nan for key, value in parts.items()}


def format_report(result: DryRun) -> str:
    lines = [
        f"dry run of {result.name}: {result.facts['parameters'] / 1e9:.3f} B parameters, "
        f"{result.facts['model_gib']} GiB per model in {result.dtype}, device {result.device}",
        "",
        f"{'stage':<14} {'wall s':>9} {'peak host MiB':>14} {'allocated MiB':>14} {'peak GPU MiB':>13}",
    ]
    if result.facts.get("note"):
        lines.insert(1, f"note: {result.facts['note']}")
    for stage in result.stages:
        gpu = "-" if stage.peak_gpu_mib is None else f"{stage.peak_gpu_mib:.0f}"
        lines.append(
            f"{stage.name:<14} {stage.seconds:>9.2f} {stage.peak_host_mib:>14.0f} "
            f"{stage.host_above_start_mib:>14.0f} {gpu:>13}"
        )
    lines += ["", "estimated full run of `pytest suites -m PAIR --tune PAIR` at the claims config's sizes:"]
    lines += [f"  {part:<28} {_duration(seconds)}" for part, seconds in result.estimate.items()]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
