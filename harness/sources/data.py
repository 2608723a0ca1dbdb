"""Named probe sets: the texts whose activations the layer-wise metrics are computed on.

The paper's sets (gsm8k, mmlu, wikitext, ifeval, humaneval, mt_bench, toxigen)
are read from the Hugging Face datasets cache, or the hub when online. Offline
sets in the same formats (``gsm8k-local`` and so on) are generated or shipped by
the project and always present. Sampling is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from harness import cache
from harness.errors import BadInputError
from harness.sources import corpus, synthetic

TOKEN_LEVEL_SAMPLES = 100  # §4.1: token-level analysis samples 100 instances
POOLED_SAMPLES = 1000  # §4.1: pooled analysis uses 1,000 instances
MAX_TOKENS = 256  # §4.1: T = 256


def token_samples_of(pooled_samples: int, asked: int | None = None) -> int:
    """How many of the pooled samples (their first) also get token-level metrics: ``asked``, or by default
    §4.1's 100, every pooled sample when there are fewer."""
    return min(TOKEN_LEVEL_SAMPLES, pooled_samples) if asked is None else asked


class ProbeDataError(BadInputError):
    """A probe set is empty, unreadable or too small for what was asked."""


class ProbeDataUnavailable(BadInputError):
    """A real benchmark's data is not in the datasets cache and the hub is offline."""


@dataclass(frozen=True)
class ProbeSet:
    name: str
    texts: tuple[str, ...]
    source: str
    seed: int

    def __post_init__(self) -> None:
        if not self.texts:
            raise ProbeDataError(f"probe set {self.name!r} is empty")
        empty = [i for i, t in enumerate(self.texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            raise ProbeDataError(f"probe set {self.name!r} has {len(empty)} empty texts (first at index {empty[0]})")

    def __len__(self) -> int:
        return len(self.texts)

    def digest(self) -> str:
        return cache.stable_hash({"name": self.name, "source": self.source, "texts": self.texts})


# --- real benchmarks -------------------------------------------------------------


@dataclass(frozen=True)
class HubSource:
    path: str
    config: str | None
    split: str
    to_text: Callable[[dict], str]


def _gsm8k_text(row: dict) -> str:
    return f"Question: {row['question']}\nAnswer: {row['answer']}"


def _mmlu_text(row: dict) -> str:
    return synthetic.mmlu_prompt(row) + " " + synthetic.LETTERS[int(row["answer"])]


HUB_SOURCES: dict[str, HubSource] = {
    "gsm8k": HubSource("openai/gsm8k", "main", "test", _gsm8k_text),
    "mmlu": HubSource("cais/mmlu", "all", "test", _mmlu_text),
    "wikitext": HubSource("Salesforce/wikitext", "wikitext-103-raw-v1", "test", lambda r: r["text"].strip()),
    "ifeval": HubSource("google/IFEval", None, "train", lambda r: r["prompt"]),
    "humaneval": HubSource("openai/openai_humaneval", None, "test", lambda r: r["prompt"]),
    "mt_bench": HubSource("HuggingFaceH4/mt_bench_prompts", None, "train", lambda r: "\n\n".join(r["prompt"])),
    "toxigen": HubSource("toxigen/toxigen-data", "annotated", "test", lambda r: r["text"]),
}


def _hub_texts(name: str) -> list[str]:
    import datasets

    source = HUB_SOURCES[name]
    try:
        rows = datasets.load_dataset(source.path, source.config, split=source.split)
    except Exception as error:  # datasets raises ConnectionError, FileNotFoundError, ValueError...
        raise ProbeDataUnavailable(
            f"probe set {name!r} needs {source.path} ({source.config or 'default'}, {source.split}), which is not "
            f"in the datasets cache and cannot be fetched here ({type(error).__name__}). Download it once with "
            f"network access (datasets.load_dataset({source.path!r}, {source.config!r})), or use the offline set "
            f"{name + '-local'!r}."
        ) from error
    texts = [source.to_text(row) for row in rows]
    return [t for t in texts if t and t.strip()]


# --- offline sets ------------------------------------------------------------------


def _generated(record: Callable[[int, str, int], dict], to_text: Callable[[dict], str]) -> Callable:
    def texts(n: int, seed: int) -> list[str]:
        return [to_text(record(seed, "test", i)) for i in range(n)]

    return texts


def _wikitext_local(n: int, seed: int) -> list[str]:
    """Held-out reference paragraphs (never seen in pretraining), drawn without replacement."""
    paragraphs = corpus.held_out_paragraphs()
    if n > len(paragraphs):
        raise ProbeDataError(f"probe set 'wikitext-local' has {len(paragraphs)} texts; {n} were asked for")
    return random.Random(f"wikitext-local|{seed}").sample(paragraphs, n)


LOCAL_SOURCES: dict[str, Callable[[int, int], list[str]]] = {
    "gsm8k-local": _generated(synthetic.gsm8k_record, _gsm8k_text),
    "mmlu-local": _generated(synthetic.mmlu_record, _mmlu_text),
    "wikitext-local": _wikitext_local,
    "ifeval-local": _generated(synthetic.ifeval_record, lambda r: r["prompt"]),
    "humaneval-local": _generated(synthetic.humaneval_record, lambda r: r["prompt"]),
    "mt_bench-local": _generated(synthetic.mt_bench_record, lambda r: "\n\n".join(r["turns"])),
    "toxigen-local": _generated(synthetic.toxigen_record, lambda r: r["text"]),
}
PROBE_SETS = tuple(HUB_SOURCES) + tuple(LOCAL_SOURCES)


def load_probe_set(name: str, n: int, seed: int = 0) -> ProbeSet:
    """``n`` texts of probe set ``name``, the same ones for the same seed."""
    if n < 1:
        raise ProbeDataError(f"asked for {n} samples of {name!r}; at least 1 is needed")
    if name in LOCAL_SOURCES:
        return ProbeSet(name, tuple(LOCAL_SOURCES[name](n, seed)), source="local:generated", seed=seed)
    if name not in HUB_SOURCES:
        raise ProbeDataError(f"unknown probe set {name!r}; known sets: {', '.join(PROBE_SETS)}")
    texts = _hub_texts(name)
    if len(texts) < n:
        raise ProbeDataError(f"probe set {name!r} has {len(texts)} usable texts; {n} were asked for")
    picked = random.Random(f"{name}|{seed}").sample(range(len(texts)), n)
    source = HUB_SOURCES[name]
    return ProbeSet(
        name,
        tuple(texts[i] for i in sorted(picked)),
        source=f"hf:{source.path}/{source.config or 'default'}/{source.split}",
        seed=seed,
    )
