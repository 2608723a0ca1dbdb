"""Downstream scores: lm-eval on in-memory models, and log-likelihoods for layer swaps.

GSM8K and MMLU are lm-eval's own tasks when their data can be had; offline,
``gsm8k_local`` and ``mmlu_local`` reuse lm-eval's GSM8K task and MMLU template
(same prompts, filters and metrics) over the project's generated data, written
with the task YAML into the cache. A real task that cannot be had offline is
reported as unavailable, never scored as zero.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from harness import cache
from harness.errors import BadInputError, NonFiniteError, first_of
from harness.sources import synthetic
from harness.sources.scoring import gsm8k_prompt

LOCAL_TASKS = ("gsm8k_local", "mmlu_local")
REAL_TASKS = ("gsm8k", "mmlu")
PRIMARY_METRIC = {
    "gsm8k": "exact_match,strict-match",
    "gsm8k_local": "exact_match,strict-match",
    "mmlu": "acc,none",
    "mmlu_local": "acc,none",
}
TASK_DATA_FORMAT = 1


# The metric reported for a task lm-eval runs that the table above does not name: the first of these it gives.
PREFERRED_METRICS = ("exact_match", "acc", "acc_norm", "f1", "word_perplexity")


def primary_metric(task: str, metrics: dict) -> str:
    """The ``metric,filter`` key a task's score is read from: the table's, else the first preferred metric the task
    reports, else its first number."""
    if task in PRIMARY_METRIC:
        return PRIMARY_METRIC[task]
    numbers = [key for key, value in metrics.items() if "," in key and isinstance(value, (int, float))]
    scores = [key for key in numbers if "_stderr" not in key.partition(",")[0]]
    for name in PREFERRED_METRICS:
        found = [key for key in scores if key.partition(",")[0] == name]
        if found:
            return found[0]
    if not scores:
        raise BadInputError(f"lm-eval reported no score for task {task!r} (its results: {sorted(metrics)})")
    return scores[0]


def check_tasks(tasks: list[str], options: EvalOptions) -> None:
    """Refuse, before any work, a task name lm-eval does not know (a typo, or a task of a newer lm-eval)."""
    known = getattr(task_manager(tasks, options), "all_tasks", None)  # None: an lm-eval without the index
    unknown = [task for task in tasks if task not in known] if known is not None else []
    if unknown:
        raise BadInputError(
            f"lm-eval {_lm_eval_version()} has no task {first_of(unknown)}: name a task, group or tag that "
            f"`lm-eval ls tasks` lists (offline: {', '.join(LOCAL_TASKS)})"
        )


def _lm_eval_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")


class TaskUnavailable(BadInputError):
    """A real benchmark's data cannot be had (not cached and the hub is offline)."""


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = 100  # items per task (None: the whole test split)
    num_fewshot: int | None = None  # None: the task's own (5 for GSM8K, 0 for MMLU)
    max_gen_toks: int | None = None  # None: lm-eval's default (256)
    batch_size: int | str | None = None  # None: lm-eval's "auto" on a GPU, 8 on the CPU
    seed: int = 0
    data_seed: int = 0  # seed of the generated local data
    test_items: int = 500  # size of each generated test split


def local_task_folder(options: EvalOptions) -> Path:
    """Generated data and rendered YAML for the local tasks, written once into the cache."""
    import lm_eval
    import lm_eval.tasks

    lm_eval_tasks = os.path.dirname(lm_eval.tasks.__file__)
    # the rendered YAML includes lm-eval's own task files by path: another environment (another checkout, venv
    # or lm-eval release) needs its own folder, or it would include files that are not there
    key = cache.stable_hash(
        {
            "format": TASK_DATA_FORMAT,
            "seed": options.data_seed,
            "test": options.test_items,
            "lm_eval_tasks": lm_eval_tasks,
            "lm_eval": getattr(lm_eval, "__version__", None),
        }
    )
    folder = cache.cache_root() / "tasks" / key
    if cache.is_complete(folder):
        return folder
    with cache.atomic_directory(folder) as scratch:
        splits = {
            "gsm8k_train.jsonl": [synthetic.gsm8k_record(options.data_seed, "train", i) for i in range(200)],
            "gsm8k_test.jsonl": [
                synthetic.gsm8k_record(options.data_seed, "test", i) for i in range(options.test_items)
            ],
            "mmlu_dev.jsonl": [synthetic.mmlu_record(options.data_seed, "validation", i) for i in range(5)],
            "mmlu_test.jsonl": [synthetic.mmlu_record(options.data_seed, "test", i) for i in range(options.test_items)],
        }
        for name, records in splits.items():
            (scratch / name).write_text("".join(json.dumps(r) + "\n" for r in records))
        for task in LOCAL_TASKS:
            template = resources.files("harness.measure").joinpath(f"tasks/{task}.yaml.in").read_text()
            rendered = template.replace("{lm_eval_tasks}", lm_eval_tasks).replace("{data_dir}", str(folder))
            (scratch / f"{task}.yaml").write_text(rendered)
    return folder


_TASK_MANAGERS: dict[tuple[str, bool], object] = {}


def task_manager(tasks: list[str], options: EvalOptions):
    """lm-eval's index of the tasks: the local ones, and lm-eval's built-in ones only when a task needs them
    (indexing them reads thousands of YAML files, about 8 s). An index is built once per process and folder where
    lm-eval's manager keeps no state between loads (an index and a stateless factory, as in lm-eval 0.4.13);
    an older manager records groups as it loads tasks, so each evaluation gets its own."""
    from lm_eval.tasks import TaskManager

    folder = str(local_task_folder(options))  # content-addressed: a complete folder never changes
    key = (folder, not all(task in LOCAL_TASKS for task in tasks))
    if key in _TASK_MANAGERS:
        return _TASK_MANAGERS[key]
    manager = TaskManager(include_path=folder, include_defaults=key[1])
    if not hasattr(manager, "task_group_map"):
        _TASK_MANAGERS[key] = manager
    return manager


# lm-eval's warnings that say nothing to a harness user: they describe how the harness itself calls it (an
# in-memory model, generation settings and shots it sets on purpose). Every other warning passes.
EXPECTED_WARNINGS = (
    "`pretrained` model kwarg is not of type `str`",
    "Passed an already-initialized model through `pretrained`",
    "specified through cli, these settings will update set parameters in yaml tasks",
    "Overwriting default num_fewshot of",
)


class _ExpectedWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in EXPECTED_WARNINGS)


def quiet_expected_warnings() -> None:
    """Keep lm-eval's known, expected warnings out of the output (idempotent)."""
    for name in ("lm_eval.models.huggingface", "lm_eval.evaluator"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedWarnings) for f in logger.filters):
            logger.addFilter(_ExpectedWarnings())


def lm_eval_scores(model, tokenizer, tasks: list[str], options: EvalOptions, per_item: bool = False) -> dict[str, dict]:
    """Score an in-memory model (plain, swapped or PEFT-wrapped) on ``tasks`` with lm-eval.

    Returns per task: the primary metric, its standard error, every metric lm-eval
    reported, and the settings; with ``per_item``, also the primary metric of each
    item in document order (for paired comparisons between models). Raises
    TaskUnavailable for a real task offline.
    """
    from lm_eval.models.huggingface import HFLM

    quiet_expected_warnings()
    wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size_for(model, options))
    return _scores(wrapped, tasks, options, per_item)


def batch_size_for(model, options: EvalOptions) -> int | str:
    """The batch size asked for; otherwise lm-eval's own search for the largest that fits ("auto") on a GPU,
    and 8 on the CPU (where "auto" would probe with out-of-memory errors that never come)."""
    if options.batch_size is not None:
        return options.batch_size
    return "auto" if model.get_input_embeddings().weight.device.type == "cuda" else 8


VLLM_INSTALL = "pip install 'layerwise-sft-harness[vllm]'"


def vllm_scores(
    checkpoint: Path, tasks: list[str], options: EvalOptions, dtype: str = "bfloat16", per_item: bool = False
) -> dict[str, dict]:
    """``lm_eval_scores`` through lm-eval's vLLM backend, for a real checkpoint folder on a GPU (the vllm
    extra): generation-heavy tasks such as GSM8K run many times faster than through transformers."""
    try:
        import vllm  # noqa: F401  (lm-eval imports it lazily; fail here, with the remedy)
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as error:
        raise BadInputError(
            f"the vllm backend needs vLLM ({error}); install it with {VLLM_INSTALL}, or score "
            "with the default backend (hf)"
        ) from None
    quiet_expected_warnings()
    wrapped = VLLM(pretrained=str(checkpoint), dtype=dtype, batch_size=options.batch_size or "auto", seed=options.seed)
    return _scores(wrapped, tasks, options, per_item)


@lru_cache(maxsize=1)
def _environment() -> tuple[tuple[str, object], ...]:
    """What lm-eval records of the environment (torch's report, package versions, git commits), probed once."""
    from lm_eval.loggers.utils import add_env_info

    storage: dict = {}
    add_env_info(storage)
    return tuple(storage.items())


@lru_cache(maxsize=8)
def _git_commit(folder: str) -> str | None:
    """What lm-eval records as the commit of the folder it runs in (``git describe --always``, else the commit
    its ``.git`` names), without git's "fatal: not a git repository" on the terminal when it is none."""
    import subprocess

    from lm_eval.loggers.utils import get_commit_from_path

    try:
        described = subprocess.run(
            ["git", "describe", "--always"], cwd=folder, capture_output=True, text=True, check=True
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return get_commit_from_path(folder)
    return described.stdout.strip()


@contextmanager
def _environment_probed_once():
    """lm-eval probes the environment with subprocesses (pip, git, nvidia-smi) on every evaluation: half a
    second of a 2.5-second LoRA run on a tiny model. Within a process the environment does not change, so
    the first probe's answer is handed to every later evaluation; the results hold the same information.
    Its git probe printed git's complaint in every run outside a repository; it is asked quietly, once per folder."""
    import lm_eval.evaluator as evaluator

    originals = evaluator.add_env_info, getattr(evaluator, "get_git_commit_hash", None)
    evaluator.add_env_info = lambda storage: storage.update(_environment())
    if originals[1] is not None:
        evaluator.get_git_commit_hash = lambda: _git_commit(os.getcwd())
    try:
        yield
    finally:
        evaluator.add_env_info = originals[0]
        if originals[1] is not None:
            evaluator.get_git_commit_hash = originals[1]


@lru_cache(maxsize=256)
def _compiled_template(template: str):
    from lm_eval import utils

    return utils.env.from_string(template)


@contextmanager
def _templates_compiled_once():
    """lm-eval compiles a task's prompt template anew (jinja2's ``from_string``) for every document it renders.
    During an evaluation each distinct template is compiled once per process (``_compiled_template``), in lm-eval's
    own environment, and rendered as before (the same text)."""
    from lm_eval import utils

    if not hasattr(utils, "env") or not callable(getattr(utils, "apply_template", None)):
        yield  # another lm-eval layout: render its own way
        return
    original = utils.apply_template
    utils.apply_template = lambda template, doc: _compiled_template(template).render(**doc)
    try:
        yield
    finally:
        utils.apply_template = original


def _scores(wrapped, tasks: list[str], options: EvalOptions, per_item: bool) -> dict[str, dict]:
    from lm_eval import simple_evaluate

    started = time.perf_counter()
    try:
        with _environment_probed_once(), _templates_compiled_once():
            results = simple_evaluate(
                model=wrapped,
                tasks=tasks,
                task_manager=task_manager(tasks, options),
                limit=options.limit,
                num_fewshot=options.num_fewshot,
                random_seed=options.seed,
                numpy_random_seed=options.seed,
                torch_random_seed=options.seed,
                fewshot_random_seed=options.seed,
                bootstrap_iters=1000,
                log_samples=per_item,
                gen_kwargs=({"max_gen_toks": options.max_gen_toks} if options.max_gen_toks else None),
            )
    except AssertionError as error:  # lm-eval asserts what a user's options can break: these two become a refusal
        if "max tokens to generate" in str(error):  # an answer must fit in the model's context
            raise BadInputError(
                f"lm-eval would generate answers of up to {options.max_gen_toks or 256} tokens, but the model's "
                f"context is {wrapped.max_length} tokens: ask for shorter answers with --set "
                "evaluation.max_gen_toks=N (--max-gen-toks N), or --set tuning.max_gen_toks=N for the LoRA arms' "
                "scoring"
            ) from None
        if "number of fewshot samples requested exceeds" in str(error):  # shots come from the task's own split
            available = str(error).strip().removeprefix("Error: ").rstrip(".")
            raise BadInputError(
                f"{options.num_fewshot} shots (--num-fewshot, evaluation.num_fewshot) are more examples than "
                f"{', '.join(tasks)} holds for its shots ({available}): ask for fewer, or leave it unset for each "
                "task's own"
            ) from None
        raise
    except ConnectionError as error:
        raise TaskUnavailable(
            f"lm-eval could not load {tasks}: the hub is offline and the data are not cached "
            f"({error}). Use {', '.join(LOCAL_TASKS)} offline."
        ) from error
    seconds = time.perf_counter() - started
    scores = {}
    for task in tasks:
        metrics = results["results"][task]
        metric = primary_metric(task, metrics)
        name, _, filter_name = metric.partition(",")
        scores[task] = {
            "metric": metric,
            "score": metrics[metric],
            "stderr": metrics.get(f"{name}_stderr,{filter_name}"),
            "all": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "n": results.get("n-samples", {}).get(task, {}).get("effective"),
            "version": results.get("versions", {}).get(task),
            "options": asdict(options),
            "seconds": round(seconds, 2),
        }
        if per_item:
            scores[task]["per_item"] = _per_item(results["samples"][task], name, filter_name)
    return scores


def _per_item(samples: list[dict], metric: str, filter_name: str) -> list[float]:
    """The metric of each logged sample under one filter, in document order."""
    rows = sorted((s["doc_id"], float(s[metric])) for s in samples if s["filter"] == filter_name)
    if not rows:
        raise RuntimeError(f"lm-eval logged no sample for the filter {filter_name!r}")
    return [value for _, value in rows]


@torch.no_grad()
def answer_log_likelihood(
    model, tokenizer, records: list[dict], batch_size: int = 16, forward=None
) -> dict[str, float]:
    """Mean per-token log-likelihood of each gold GSM8K answer given its question (and its standard error).

    This is what a swapped model is scored on: exact match can sit at 0 for every
    hybrid of a fully fine-tuned pair while the likelihood of the target still moves.
    ``forward(batch number, input ids, attention mask)`` gives the logits of a batch (default: the model's
    own forward pass); the batches are the same on every call.
    """
    if not records:
        raise BadInputError("no records to score")
    device = model.get_input_embeddings().weight.device
    if forward is None:

        def forward(number, ids, mask):
            return model(input_ids=ids, attention_mask=mask).logits

    per_record = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [tokenizer(gsm8k_prompt(r["question"]))["input_ids"] for r in chunk]
        answers = [tokenizer(" " + r["answer"])["input_ids"] for r in chunk]
        width = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for row, (p, a) in enumerate(zip(prompts, answers, strict=True)):
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            mask[row, : len(p) + len(a)] = 1
            target[row, len(p) : len(p) + len(a)] = True
        logits = forward(start // batch_size, ids.to(device), mask.to(device)).float().cpu()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        scored = target[:, 1:]
        per_record += ((logprobs * scored).sum(1) / scored.sum(1)).tolist()
    values = torch.tensor(per_record, dtype=torch.float64)
    if not torch.isfinite(values).all():
        raise NonFiniteError("the model gave a non-finite log-likelihood; check its weights")
    return {
        "score": float(values.mean()),
        "stderr": float(values.std() / math.sqrt(len(values))),
        "n": len(values),
        "per_item": per_record,
    }


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_tokens: int = 256, batch_size: int = 8) -> dict:
    """Token-level perplexity of ``texts`` (right-padded batches, padding masked), with each text's summed
    negative log-likelihood and token count, so that texts can be resampled."""
    from harness.measure.capture import batches, encode

    device = model.get_input_embeddings().weight.device
    encoded = encode(tokenizer, texts, max_tokens)
    nll, tokens = [], []
    for batch in batches(encoded, list(range(len(texts))), batch_size, tokenizer.pad_token_id):
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
        logprobs = torch.log_softmax(logits[:, :-1].float().cpu(), -1).gather(-1, batch.input_ids[:, 1:, None])
        valid = batch.attention_mask[:, 1:]
        nll += (-torch.where(valid.bool(), logprobs.squeeze(-1), 0.0).sum(1)).tolist()
        tokens += valid.sum(1).tolist()
    total_tokens = sum(tokens)
    if total_tokens == 0:
        raise BadInputError("no token to score: every text is a single token")
    total_nll = sum(nll)
    if not math.isfinite(total_nll):
        raise NonFiniteError("the model gave a non-finite log-likelihood; check its weights")
    return {
        "perplexity": math.exp(total_nll / total_tokens),
        "tokens": total_tokens,
        "per_text": {"nll": nll, "tokens": tokens},
    }
