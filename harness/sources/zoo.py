"""Tiny base/SFT pairs built offline: real OLMo-2 and Mistral architectures, trained here.

A pair is built in four steps, all seeded: train a byte-level BPE on local
English text; pretrain a base model on that text; fine-tune a copy on
generated GSM8K- and MMLU-format instruction data (loss on answer tokens
only, all parameters, as the paper's SFT checkpoints are full fine-tunes);
score both on held-out problems. Each pair is saved with ``save_pretrained``
into a cache directory keyed by a hash of its recipe and the library
versions, written atomically, and reused while the recipe is unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tqdm.auto import tqdm

from harness import cache, training
from harness.sources import corpus, scoring, synthetic
from harness.sources.tokenizer import train_bpe_tokenizer

ZOO_FORMAT = 1  # bump when the build procedure changes in a way the recipe does not show


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines a tiny pair's weights."""

    family: str  # "olmo2" or "mistral"
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 10
    num_heads: int = 4
    num_kv_heads: int = 4
    max_positions: int = 1024
    pretrain_steps: int = 250
    pretrain_batch: int = 16
    # 64-token windows: measured, pretraining took 2.5 times less time than with 128 (59 s against about 150 s
    # on 2 cores), for a final loss of 5.25 against 5.00, and the SFT still learns the task (exact match 0.47)
    pretrain_length: int = 64
    pretrain_lr: float = 3e-3
    sft_steps: int = 500
    sft_batch: int = 16
    sft_lr: float = 2e-3
    sft_examples: int = 6000
    mmlu_share: float = 0.2  # share of MMLU-format examples in the SFT mixture
    eval_examples: int = 150
    seed: int = 0

    def __post_init__(self) -> None:
        if self.family not in MODEL_CLASSES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {sorted(MODEL_CLASSES)}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")

    def key(self) -> str:
        return cache.stable_hash(
            {
                "recipe": dataclasses.asdict(self),
                "zoo_format": ZOO_FORMAT,
                "torch": torch.__version__.split("+")[0],
                "transformers": transformers.__version__,
            }
        )


MODEL_CLASSES = {"olmo2": "Olmo2", "mistral": "Mistral"}

RECIPES: dict[str, TinyRecipe] = {
    "tiny_olmo2": TinyRecipe(family="olmo2"),
    # Mistral (pre-norm only, grouped-query attention) needs more SFT steps to reach the same skill.
    "tiny_mistral": TinyRecipe(family="mistral", num_kv_heads=2, sft_steps=700),
}


@dataclass(frozen=True)
class BuiltPair:
    name: str
    base_dir: Path
    sft_dir: Path
    info: dict

    @property
    def directory(self) -> Path:
        return self.base_dir.parent


def model_config(recipe: TinyRecipe, tokenizer) -> transformers.PretrainedConfig:
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    if recipe.family == "mistral":
        return transformers.MistralConfig(**common, sliding_window=None)
    return transformers.Olmo2Config(**common)


def _sft_examples(recipe: TinyRecipe, tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) pairs; the answer ends with eos so the model learns to stop."""
    examples = []
    n_mmlu = int(recipe.sft_examples * recipe.mmlu_share)
    for index in range(recipe.sft_examples - n_mmlu):
        record = synthetic.gsm8k_record(recipe.seed, "train", index)
        examples.append((scoring.gsm8k_prompt(record["question"]), " " + record["answer"]))
    for index in range(n_mmlu):
        record = synthetic.mmlu_record(recipe.seed, "train", index)
        examples.append((synthetic.mmlu_prompt(record), " " + synthetic.LETTERS[record["answer"]]))
    eos = [tokenizer.eos_token_id]
    return [(tokenizer(p)["input_ids"], tokenizer(a)["input_ids"] + eos) for p, a in examples]


def _pretraining_stream(tokenizer) -> torch.Tensor:
    ids: list[int] = []
    for paragraph in corpus.pretraining_paragraphs():
        ids.extend(tokenizer(paragraph, verbose=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def _tokenizer_texts(recipe: TinyRecipe) -> list[str]:
    # A real tokenizer has seen prompts like these; a few hundred keep "Question", "####" whole.
    tasks = [synthetic.gsm8k_record(recipe.seed, "train", i) for i in range(300)]
    return corpus.pretraining_paragraphs() + [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in tasks]


def build_pair_into(recipe: TinyRecipe, directory: Path, progress: bool = True) -> dict:
    """Build and save a pair into ``directory/base`` and ``directory/sft``; return the build info."""
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    tokenizer = train_bpe_tokenizer(_tokenizer_texts(recipe), recipe.vocab_size)
    model_class = getattr(transformers, MODEL_CLASSES[recipe.family] + "ForCausalLM")
    base = model_class(model_config(recipe, tokenizer))

    pretrain_losses = training.train(
        base,
        training.window_sampler(_pretraining_stream(tokenizer), recipe.pretrain_batch, recipe.pretrain_length),
        training.Schedule(recipe.pretrain_steps, recipe.pretrain_lr, weight_decay=0.1),
        seed=recipe.seed,
        description=f"{recipe.family}: pretrain",
        progress=progress,
    )
    pretrained_at = time.perf_counter()

    sft = copy.deepcopy(base)
    sft_losses = training.train(
        sft,
        training.supervised_sampler(_sft_examples(recipe, tokenizer), recipe.sft_batch, tokenizer.pad_token_id),
        training.Schedule(recipe.sft_steps, recipe.sft_lr),
        seed=recipe.seed + 1,
        description=f"{recipe.family}: SFT",
        progress=progress,
    )
    tuned_at = time.perf_counter()

    held_out = [synthetic.gsm8k_record(recipe.seed, "test", i) for i in range(recipe.eval_examples)]
    scores = {
        label: scoring.greedy_exact_match(model, tokenizer, held_out) for label, model in (("base", base), ("sft", sft))
    }
    for label, model in (("base", base), ("sft", sft)):
        model.save_pretrained(directory / label)
        tokenizer.save_pretrained(directory / label)
    return {
        "recipe": dataclasses.asdict(recipe),
        "key": recipe.key(),
        "parameters": sum(p.numel() for p in base.parameters()),
        "pretrain_seconds": round(pretrained_at - started, 1),
        "sft_seconds": round(tuned_at - pretrained_at, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
        "pretrain_final_loss": round(sum(pretrain_losses[-20:]) / len(pretrain_losses[-20:]), 4),
        "sft_final_loss": round(sum(sft_losses[-20:]) / len(sft_losses[-20:]), 4),
        "exact_match": {
            "base": scores["base"],
            "sft": scores["sft"],
            "examples": len(held_out),
            "split": "test",
            "task": "gsm8k-format (generated)",
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "weights_sha256": {label: cache.directory_sha256(directory / label) for label in ("base", "sft")},
    }


def pair_directory(name: str, recipe: TinyRecipe, root: Path | None = None) -> Path:
    return (root or cache.cache_root()) / "zoo" / f"{name}-{recipe.key()}"


def build_pair(
    name: str, recipe: TinyRecipe | None = None, root: Path | None = None, progress: bool = True
) -> BuiltPair:
    """The pair ``name``, from the cache when its recipe was built before, else built now."""
    recipe = recipe or RECIPES[name]
    directory = pair_directory(name, recipe, root)

    def build(scratch: Path) -> None:
        if progress:
            tqdm.write(f"building {name} (cache miss) into {directory}")
        info = build_pair_into(recipe, scratch, progress=progress)
        cache.write_json_atomic(scratch / "build.json", {"name": name, **info})

    cache.build_once(directory, build)
    info = json.loads((directory / "build.json").read_text())
    return BuiltPair(name=name, base_dir=directory / "base", sft_dir=directory / "sft", info=info)
