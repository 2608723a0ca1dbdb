"""Train one LoRA arm on a base model and score it: the unit of the mid-block study (§4.4, App. B).

A run loads the base model (one model in memory), wraps it with the arm's
adapters, trains them on GSM8K-format data (GSM8K's train split when the task is
``gsm8k``, the project's generated train split for ``gsm8k_local``), then scores
it three ways: lm-eval's exact match on the task (with each item's result, for
paired comparisons), the log-likelihood of the gold answers, and perplexity on
held-out general text (retention). Every run is cached under a key of the
base weights, the arm, the settings and the seed; an interrupted run resumes
from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from harness import cache, training
from harness.errors import BadInputError
from harness.lora import tuning
from harness.measure import evaluate
from harness.sources import models, synthetic
from harness.sources.scoring import gsm8k_prompt

RUNS_FORMAT = 2
TUNING_TASKS = ("auto", "gsm8k", "gsm8k_local")  # auto: gsm8k when its data can be had, else gsm8k_local


@dataclass(frozen=True)
class TuneSettings:
    """How every arm of a study is trained and scored (from the ``tuning`` section of the claims config)."""

    task: str = "auto"
    full_rank: int = 8
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    scaling: str = "constant_ratio"
    alpha_ratio: float = 2.0
    fixed_alpha: float = 128.0
    steps: int = 500
    batch_size: int = 16
    learning_rate: float = 2e-4
    train_examples: int = 7473  # GSM8K's train split
    seeds: tuple[int, ...] = (0, 1, 2)
    checkpoint_every: int = 50
    eval_limit: int | None = 200
    num_fewshot: int | None = None
    max_gen_toks: int | None = None
    eval_batch_size: int | None = None  # items generated at once (None: lm-eval's "auto" on a GPU, 8 on the CPU)
    likelihood_items: int = 100
    retention_sets: tuple[str, ...] = ("ifeval", "mt_bench")
    retention_samples: int = 100
    retention_max_tokens: int = 256
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.task not in TUNING_TASKS:
            raise BadInputError(f"tuning task must be one of {TUNING_TASKS}, got {self.task!r}")
        if not self.seeds:
            raise BadInputError("a study needs at least one seed")

    @classmethod
    def from_thresholds(cls, thresholds: dict, dtype: str | None = None) -> TuneSettings:
        """Settings from a pair's merged claims config: its ``tuning`` and ``evaluation`` sections."""
        section = dict(thresholds["tuning"])
        evaluation = thresholds["evaluation"]
        for key in ("modules", "seeds", "retention_sets"):
            section[key] = tuple(section[key])
        section.setdefault("num_fewshot", evaluation["num_fewshot"])
        if section.get("max_gen_toks") is None:  # the evaluation's, unless the study sets its own
            section["max_gen_toks"] = evaluation["max_gen_toks"]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise BadInputError(f"unknown tuning settings {unknown}; known: {sorted(known)}")
        return cls(**section, **({"dtype": dtype} if dtype else {}))

    def resolved(self) -> TuneSettings:
        """``auto`` made concrete: GSM8K when its train split can be loaded here, the generated task otherwise."""
        if self.task != "auto":
            return self
        try:
            training_records("gsm8k", 1)
        except evaluate.TaskUnavailable:
            return dataclasses.replace(self, task="gsm8k_local")
        return dataclasses.replace(self, task="gsm8k")

    def arm(self, label: str, layers, n_layers: int) -> tuning.Arm:
        return tuning.layer_set_arm(
            label, layers, n_layers, self.full_rank, self.modules, self.scaling, self.alpha_ratio, self.fixed_alpha
        )

    def eval_options(self) -> evaluate.EvalOptions:
        return evaluate.EvalOptions(
            limit=self.eval_limit,
            num_fewshot=self.num_fewshot,
            max_gen_toks=self.max_gen_toks,
            batch_size=self.eval_batch_size,
        )

    def training_key(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "seeds"}


# --- data -------------------------------------------------------------------------------------


@lru_cache(maxsize=4)  # every arm and seed of a study trains on the same records
def training_records(task: str, count: int, data_seed: int = 0) -> tuple[dict, ...]:
    """Question/answer records to train on: GSM8K's train split, or the generated one."""
    if task == "gsm8k_local":
        return tuple(synthetic.gsm8k_record(data_seed, "train", i) for i in range(count))
    import datasets

    try:
        rows = datasets.load_dataset("openai/gsm8k", "main", split="train")
    except Exception as error:  # offline and not cached: ConnectionError, FileNotFoundError, ValueError...
        raise evaluate.TaskUnavailable(
            f"GSM8K's train split is not in the datasets cache and cannot be fetched here ({type(error).__name__}). "
            f"Download it once (datasets.load_dataset('openai/gsm8k', 'main')), or tune on gsm8k_local."
        ) from error
    return tuple({"question": r["question"], "answer": r["answer"]} for r in rows)[:count]


def supervised_examples(records: tuple[dict, ...] | list[dict], tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + eos) in the prompt format lm-eval scores GSM8K with."""
    if tokenizer.eos_token_id is None:
        raise BadInputError("the tokenizer has no eos token: the arms could not learn to stop")
    if tokenizer.pad_token_id is None:
        raise BadInputError("the tokenizer has no pad token; set one before tuning")
    examples = []
    for record in records:
        prompt = tokenizer(gsm8k_prompt(record["question"]))["input_ids"]
        answer = tokenizer(" " + record["answer"], add_special_tokens=False)["input_ids"]
        examples.append((prompt, answer + [tokenizer.eos_token_id]))
    if not examples:
        raise BadInputError("no training examples")
    return examples


@lru_cache(maxsize=4)  # every arm and seed of a study tokenizes the same records with the same tokenizer
def _tokenized_examples(base: models.ModelRef, task: str, count: int) -> tuple[tuple[list[int], list[int]], ...]:
    return tuple(supervised_examples(training_records(task, count), models.load_tokenizer(base)))


@lru_cache(maxsize=4)  # read once per study, not once per arm
def retention_texts(settings: TuneSettings) -> dict[str, list[str] | str]:
    """Held-out general text per retention set; an unavailable set maps to the reason."""
    from harness.sources import data

    texts: dict[str, list[str] | str] = {}
    for name in settings.retention_sets:
        try:
            texts[name] = list(data.load_probe_set(name, settings.retention_samples, seed=0).texts)
        except data.ProbeDataUnavailable as error:
            texts[name] = str(error)
    return texts


# --- scoring ----------------------------------------------------------------------------------


def score_model(model, tokenizer, settings: TuneSettings, texts: dict[str, list[str] | str]) -> dict:
    """Task score with per-item results, answer log-likelihood, and retention perplexity of one model."""
    task = evaluate.lm_eval_scores(model, tokenizer, [settings.task], settings.eval_options(), per_item=True)
    records = [synthetic.gsm8k_record(0, "test", i) for i in range(settings.likelihood_items)]
    likelihood = evaluate.answer_log_likelihood(model, tokenizer, records)
    retention = {}
    for name, value in texts.items():
        retention[name] = (
            {"unavailable": value}
            if isinstance(value, str)
            else evaluate.perplexity(model, tokenizer, value, settings.retention_max_tokens)
        )
    return {
        "task": task[settings.task],
        "likelihood": {k: v for k, v in likelihood.items() if k != "per_item"},
        "likelihood_per_item": likelihood["per_item"],
        "retention": retention,
    }


def _fingerprint(base: models.ModelRef) -> str:
    """The base model's files (weights, config, tokenizer), hashed once per process and state of its folder."""
    return _files_fingerprint(base, _folder_state(base))


def _folder_state(base: models.ModelRef) -> tuple:
    """Names, sizes and modification times of a local model's files: a change re-hashes them."""
    if not base.is_local:
        return ()
    folder = Path(base.location).expanduser()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


@lru_cache(maxsize=8)
def _files_fingerprint(base: models.ModelRef, state: tuple) -> str:
    return models.files_fingerprint(base)


def _run_folder(base: models.ModelRef, label: str, key: dict) -> Path:
    fingerprint = _fingerprint(base)
    return cache.cache_root() / "tuning" / cache.stable_hash(fingerprint) / f"{label}-{cache.stable_hash(key)}"


def base_scores(base: models.ModelRef, settings: TuneSettings, device: str = "auto") -> dict:
    """The untuned base model's scores (the ``00000`` row), cached like a run."""
    key = {"format": RUNS_FORMAT, "settings": settings.training_key(), "untuned": True}
    folder = _run_folder(base, "base", key)
    result_path = folder / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    model = models.load_model(base, dtype=settings.dtype, device=device)
    tokenizer = models.load_tokenizer(base)
    result = {
        "label": "base",
        "seed": None,
        **score_model(model, tokenizer, settings, retention_texts(settings)),
        "seconds": {"total": round(time.perf_counter() - started, 2)},
    }
    del model
    cache.write_json_atomic(result_path, result)
    return json.loads(result_path.read_text())


def _arm_folder(base: models.ModelRef, arm: tuning.Arm, seed: int, settings: TuneSettings) -> Path:
    key = {"format": RUNS_FORMAT, "settings": settings.training_key(), "arm": dataclasses.asdict(arm), "seed": seed}
    return _run_folder(base, arm.label, key)


def cached_result(base: models.ModelRef, arm: tuning.Arm, seed: int, settings: TuneSettings) -> dict | None:
    """The result of a run when it is in the cache (None otherwise)."""
    result_path = _arm_folder(base, arm, seed, settings) / "result.json"
    return json.loads(result_path.read_text()) if result_path.exists() else None


def run_arm_quietly(base: models.ModelRef, arm: tuning.Arm, seed: int, settings: TuneSettings) -> str:
    """``run_arm`` as a job (``arm_jobs``): on the job's own GPU when it has one, the result into the cache."""
    run_arm(base, arm, seed, settings, device="auto", progress=False)
    return f"{arm.label} seed {seed}"


def run_arm(
    base: models.ModelRef,
    arm: tuning.Arm,
    seed: int,
    settings: TuneSettings,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Train ``arm`` on ``base`` with ``seed`` and score it; cached, and resumed from a checkpoint if cut off."""
    folder = _arm_folder(base, arm, seed, settings)
    result_path = folder / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    with cache.exclusive(folder):  # another process training this run: wait for it and read its result
        if not result_path.exists():
            _train_and_score(folder, base, arm, seed, settings, device, progress)
    return json.loads(result_path.read_text())  # the same whether it was trained now or read from the cache


def run_folder(base: models.ModelRef, arm: tuning.Arm, seed: int, settings: TuneSettings) -> Path:
    """Where the run of ``arm`` with ``seed`` is cached."""
    return _arm_folder(base, arm, seed, settings)


def _train_and_score(
    folder: Path, base: models.ModelRef, arm: tuning.Arm, seed: int, settings: TuneSettings, device: str, progress: bool
) -> None:
    result_path = folder / "result.json"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.manual_seed(seed)  # the adapters' initialisation
    model = models.load_model(base, dtype=settings.dtype, device=device)
    tokenizer = models.load_tokenizer(base)
    wrapped = tuning.apply_arm(model, arm)
    examples = _tokenized_examples(base, settings.task, settings.train_examples)
    device_of = model.get_input_embeddings().weight.device
    sampler = training.supervised_sampler(examples, settings.batch_size, tokenizer.pad_token_id)
    losses = training.train(
        wrapped,
        lambda generator: {k: v.to(device_of) for k, v in sampler(generator).items()},
        training.Schedule(settings.steps, settings.learning_rate),
        seed=seed,
        description=f"LoRA {arm.label} seed {seed}",
        progress=progress,
        checkpoints=training.Checkpoints(folder / "checkpoint.pt", settings.checkpoint_every),
    )
    trained = time.perf_counter()
    trainable = tuning.trainable_parameters(wrapped)
    # scored as the base model with the adapters merged into its weights: the same function, without the adapters'
    # layers and peft's wrappers around every call
    merged = wrapped.merge_and_unload()
    scores = score_model(merged, tokenizer, settings, retention_texts(settings))
    result = {
        "label": arm.label,
        "seed": seed,
        "arm": dataclasses.asdict(arm),
        "trainable_parameters": trainable,
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        **scores,
        "seconds": {"train": round(trained - started, 2), "score": round(time.perf_counter() - trained, 2)},
    }
    del wrapped, merged, model
    cache.write_json_atomic(result_path, result)
    (folder / "checkpoint.pt").unlink(missing_ok=True)
