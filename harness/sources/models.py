"""The registry of base/SFT pairs, and the one path by which every model is loaded.

Real checkpoints come from the Hugging Face cache or hub; the tiny pairs are
built offline by ``harness.sources.zoo`` and saved with ``save_pretrained``, so both
load through ``AutoModelForCausalLM.from_pretrained`` alike.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from harness import cache
from harness.errors import BadInputError, first_of
from harness.sources import layouts, loading

ARCHITECTURE_FIELDS = (
    "model_type",
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


# The model types whose layout (decoder layers, Q/K/V/O, norms, router and experts) ``layouts`` knows: what
# the hooks, the weight change (eq. 1), the swaps and the LoRA masks address.
SUPPORTED_MODEL_TYPES = layouts.SUPPORTED_MODEL_TYPES


class UnsupportedModelError(BadInputError):
    """A checkpoint the harness cannot analyse layer by layer (not a decoder-only causal LM of a known layout,
    or with weights that are not finite)."""


def check_supported_layout(config, name: str) -> None:
    """Refuse, before any work, a checkpoint that is not a decoder-only causal LM of a supported layout."""
    model_type = getattr(config, "model_type", None)
    architectures = getattr(config, "architectures", None) or []
    causal = not getattr(config, "is_encoder_decoder", False) and (
        not architectures or any(arch.endswith(("ForCausalLM", "ForConditionalGeneration")) for arch in architectures)
    )
    if not causal or model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{name} is a {model_type!r} model ({', '.join(architectures) or 'no architecture named'}): the harness "
            f"analyses decoder-only causal LMs of the families it knows the layout of "
            f"({', '.join(SUPPORTED_MODEL_TYPES)})"
        )


def check_readable_weights(ref: ModelRef) -> None:
    """Refuse a local checkpoint whose safetensors files are cut short or corrupt, naming the file: only the
    headers are read, so this costs nothing next to loading."""
    if not ref.is_local:
        return
    import json
    import struct

    for path in sorted(Path(ref.location).expanduser().glob("*.safetensors")):
        size = path.stat().st_size
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > size - 8:
                    raise ValueError("its header runs past the end of the file")
                header = json.loads(handle.read(length))
            ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
            if 8 + length + max(ends, default=0) > size:
                raise ValueError(f"its tensors need {8 + length + max(ends)} bytes, the file has {size}")
        except (struct.error, ValueError, KeyError, TypeError, IndexError) as error:
            raise UnsupportedModelError(
                f"{path} is not a complete safetensors file ({error}): the checkpoint is "
                "truncated or corrupt; download or save it again"
            ) from None


def _all_finite(tensor: torch.Tensor, block: int = 1 << 24) -> bool:
    """Whether every value is finite, a block at a time: a whole-tensor check would hold a mask of it (and, for
    bfloat16 on the CPU, a float32 copy): 1 GB for OLMo-2 1B's embedding."""
    flat = tensor.detach().reshape(-1)
    return all(bool(torch.isfinite(flat[start : start + block]).all()) for start in range(0, flat.numel(), block))


def check_finite_weights(model, name: str) -> None:
    """Refuse a model with NaN or infinite weights: every score and metric of it would be meaningless."""
    broken = [param_name for param_name, param in model.named_parameters() if not _all_finite(param)]
    if broken:
        shown = first_of(broken, 5)
        raise UnsupportedModelError(f"{name} has non-finite (NaN or infinite) weights in {shown}")


class UnknownPairError(BadInputError, KeyError):
    """A pair name the registry does not know."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr of it
        return str(self.args[0])


class PairMismatchError(BadInputError):
    """Base and SFT models do not share the architecture a layer-wise comparison needs."""


class UnreadableCheckpointError(BadInputError):
    """A checkpoint's config or tokenizer files that transformers cannot read (not JSON, an unknown model type)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: " + (text.splitlines()[0] if text else "(no message)")


class ModelUnavailableError(BadInputError):
    """A model cannot be had here (not cached and the hub is offline, or no such directory)."""


@dataclass(frozen=True)
class ModelRef:
    """One checkpoint: a hub id or a local directory, and an optional revision."""

    location: str
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.location).expanduser().is_dir() or self.location.startswith(("/", ".", "~"))

    def describe(self) -> str:
        return self.location + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class ModelSpec:
    """A base/SFT pair under a marker name (``pytest -m NAME`` selects it)."""

    name: str
    base: ModelRef
    sft: ModelRef
    family: str
    dtype: str = "bfloat16"
    builder: str | None = None  # a harness.sources.zoo recipe name: the pair is built offline on first use
    notes: str = field(default="", compare=False)
    # the base's parameter count as its publisher gives it ("8.03B"); its shape (harness/shapes/NAME.json) is
    # tested against it
    published_parameters: str | None = field(default=None, compare=False)

    @property
    def is_built_locally(self) -> bool:
        return self.builder is not None


def _hub_pair(name: str, base: str, sft: str, family: str, parameters: str, notes: str = "") -> ModelSpec:
    return ModelSpec(name, ModelRef(base), ModelRef(sft), family, notes=notes, published_parameters=parameters)


_GATED = "gated on the hub: accept the licence and run `hf auth login` first"


def _tiny_pair(name: str, family: str) -> ModelSpec:
    placeholder = ModelRef(f"harness-zoo:{name}")
    return ModelSpec(
        name,
        placeholder,
        placeholder,
        family,
        dtype="float32",
        builder=name,
        notes="built offline by harness.sources.zoo on first use, then cached",
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _hub_pair("olmo2_1b", "allenai/OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B-SFT", "olmo2", "1.48B"),
        _hub_pair("olmo2_7b", "allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-SFT", "olmo2", "7.30B"),
        _hub_pair("olmo2_13b", "allenai/OLMo-2-1124-13B", "allenai/OLMo-2-1124-13B-SFT", "olmo2", "13.7B"),
        _hub_pair("olmo2_32b", "allenai/OLMo-2-0325-32B", "allenai/OLMo-2-0325-32B-SFT", "olmo2", "32.2B"),
        _hub_pair("olmo3_7b", "allenai/Olmo-3-1025-7B", "allenai/Olmo-3-7B-Instruct-SFT", "olmo3", "7.30B"),
        _hub_pair(
            "olmoe_1b_7b",
            "allenai/OLMoE-1B-7B-0924",
            "allenai/OLMoE-1B-7B-0924-SFT",
            "olmoe",
            "6.92B",
            notes="a mixture of 64 experts, 8 active (1.3B active parameters)",
        ),
        _hub_pair(
            "llama31_8b", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "llama", "8.03B", notes=_GATED
        ),
        _hub_pair("qwen25_7b", "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", "qwen2", "7.62B"),
        _hub_pair("qwen3_8b", "Qwen/Qwen3-8B-Base", "Qwen/Qwen3-8B", "qwen3", "8.2B"),
        _hub_pair("gemma2_9b", "google/gemma-2-9b", "google/gemma-2-9b-it", "gemma2", "9.24B", notes=_GATED),
        _hub_pair(
            "gemma3_12b",
            "google/gemma-3-12b-pt",
            "google/gemma-3-12b-it",
            "gemma3",
            "12.2B",
            notes=_GATED + "; an image-text model: its text decoder is analysed (the count includes the vision tower)",
        ),
        _hub_pair(
            "mistral_7b",
            "mistralai/Mistral-7B-v0.1",
            "mistralai/Mistral-7B-Instruct-v0.1",
            "mistral",
            "7.24B",
            notes=_GATED,
        ),
        _tiny_pair("tiny_olmo2", "olmo2"),
        _tiny_pair("tiny_mistral", "mistral"),
    )
}


class PairSource(Protocol):
    """Pairs built by something the registry does not know (the planted controls): a name it answers for
    becomes a spec, and a spec's ``builder`` it answers for is built by it."""

    def spec(self, name: str) -> ModelSpec | None: ...

    def build(self, name: str, progress: bool = True): ...  # a harness.sources.zoo.BuiltPair


PAIR_SOURCES: list[PairSource] = []


def add_pair_source(source: PairSource) -> None:
    """Let ``get_spec`` and ``resolve_pair`` answer for ``source``'s pairs too (once, however often added)."""
    if all(known is not source for known in PAIR_SOURCES):
        PAIR_SOURCES.append(source)


def _source_of(name: str) -> PairSource | None:
    return next((source for source in PAIR_SOURCES if source.spec(name) is not None), None)


REAL_PAIRS = tuple(name for name, spec in REGISTRY.items() if not spec.is_built_locally)
TINY_PAIRS = tuple(name for name, spec in REGISTRY.items() if spec.is_built_locally)
DEFAULT_PAIR = "tiny_olmo2"


def custom_pair(
    base: str,
    sft: str,
    name: str = "custom",
    dtype: str = "bfloat16",
    base_revision: str | None = None,
    sft_revision: str | None = None,
) -> ModelSpec:
    """A pair the user names by hub id or local directory."""
    return ModelSpec(name, ModelRef(base, base_revision), ModelRef(sft, sft_revision), family="custom", dtype=dtype)


def pair_locations(base: str | None, sft: str | None) -> tuple[str, str] | None:
    """The (base, SFT) a user names with --base and --sft (None when neither is given).

    An SFT published as a PEFT adapter names its base itself (``base_model_name_or_path`` of its
    adapter_config.json), so ``sft`` may come alone; any other SFT needs its base given."""
    if not (base or sft):
        return None
    if base and sft:
        return base, sft
    if not sft:
        raise BadInputError("--base needs --sft: the SFT checkpoint (hub id or folder) to compare with it")
    from harness.sources import adapters

    folder = adapters.adapter_folder(sft, offline=hub_offline())
    if folder is None:
        where = " (offline, and not in the hub cache)" if hub_offline() else ""
        raise BadInputError(
            f"--sft {sft} alone: only an SFT published as a PEFT adapter names its base, and {sft} is not "
            f"one{where}; give --base too"
        )
    named = adapters.read_config(folder).get("base_model_name_or_path")
    if not isinstance(named, str) or not named.strip():
        raise BadInputError(f"the adapter {sft} does not name its base (no base_model_name_or_path): give --base")
    return named, sft


def get_spec(name: str) -> ModelSpec:
    source = _source_of(name)
    if source is not None:
        return source.spec(name)
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownPairError(
            f"unknown pair {name!r}; registered pairs: {', '.join(REGISTRY)}. "
            "Name any other pair with --base and --sft."
        ) from None


# --- availability -----------------------------------------------------------------


def hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def cached_snapshot(ref: ModelRef) -> Path | None:
    """The cached snapshot folder holding ``ref``'s config and all its weights, or None. Never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(ref.location, revision=ref.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return folder if _has_complete_weights(folder) else None


def _has_complete_weights(folder: Path) -> bool:
    return _weights_problem(folder) is None


def _weights_problem(folder: Path) -> str | None:
    """What keeps a checkpoint folder's config and weights from loading (None when nothing does)."""
    if not (folder / "config.json").is_file():
        return "has no config.json"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        import json

        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            return "has a model.safetensors.index.json that is not a readable shard index"
        lacking = sorted(shard for shard in shards if not (folder / shard).is_file())
        if lacking:
            shown = first_of(lacking)
            return f"lacks {shown} of the {len(shards)} shards its model.safetensors.index.json names"
        return None
    if any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file():
        return None
    return "has no weights (no *.safetensors, no pytorch_model.bin)"


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_has_tokenizer(ref: ModelRef) -> None:
    """Refuse, before any work, a local checkpoint saved without its tokenizer: the probe texts are encoded by
    each model's own."""
    folder = Path(ref.location).expanduser()
    if not ref.is_local or any((folder / name).is_file() for name in TOKENIZER_FILES) or any(folder.glob("*.tiktoken")):
        return
    raise ModelUnavailableError(
        f"{ref.location} has no tokenizer ({', '.join(TOKENIZER_FILES)}): save the tokenizer the model was trained "
        "with into it (tokenizer.save_pretrained(DIR))"
    )


def _unavailable_checkpoint(ref: ModelRef) -> str | None:
    if ref.is_local:
        folder = Path(ref.location).expanduser()
        if not folder.is_dir():
            return f"{ref.location} is not a directory"
        if (folder / "adapter_config.json").is_file():  # an SFT published as a PEFT adapter on its base
            weights = ("adapter_model.safetensors", "adapter_model.bin")
            return (
                None
                if any((folder / name).is_file() for name in weights)
                else (f"{ref.location} has adapter_config.json but no adapter_model.safetensors")
            )
        problem = _weights_problem(folder)
        if problem:
            return f"{ref.location} {problem}"
        if not any(folder.glob("*.safetensors")):
            return (
                f"{ref.location} holds its weights as pytorch_model.bin only: the harness streams weights "
                "from safetensors; convert it with AutoModelForCausalLM.from_pretrained(DIR)"
                ".save_pretrained(DIR)"
            )
        return None
    if hub_offline() and cached_snapshot(ref) is None:
        from harness.sources import adapters

        if adapters.adapter_folder(ref.location, ref.revision, offline=True) is not None:
            return None
        return f"{ref.describe()} is not in the Hugging Face cache"
    return None


def unavailable_reason(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be loaded here, as a message that says what to do; None when it can."""
    if spec.is_built_locally:
        return None
    missing = [r for r in (spec.base, spec.sft) if _unavailable_checkpoint(r)]
    if not missing:
        return None
    details = "; ".join(_unavailable_checkpoint(r) for r in missing)
    remote = [r for r in missing if not r.is_local]
    advice = []
    if remote:
        fetch = " and ".join(
            f"`hf download {r.location}" + (f" --revision {r.revision}`" if r.revision else "`") for r in remote
        )
        advice.append(
            f"fetch the weights with {fetch} on a machine with network access"
            + (" (the hub is offline here: HF_HUB_OFFLINE=1)" if hub_offline() else "")
        )
    advice.append(
        ("or " if advice else "") + "name local checkpoints with --base DIR --sft DIR (the SFT may be a "
        "PEFT adapter folder)"
    )
    if spec.notes:
        advice.append(spec.notes)
    return f"pair {spec.name!r} unavailable: {details}. To run it, " + "; ".join(advice) + "."


# --- resolution and loading ---------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPair:
    """A pair whose two checkpoints can be loaded now."""

    spec: ModelSpec
    base: ModelRef
    sft: ModelRef  # an SFT given as an adapter: the merged checkpoint in the cache
    build_info: dict | None = None
    adapter: dict | None = None  # the adapter's config, when the SFT was given as one
    adapter_dir: Path | None = None


def resolve_pair(spec: ModelSpec, progress: bool = True) -> ResolvedPair:
    """Build a tiny pair if needed, check availability and architecture; never downloads when offline."""
    if spec.is_built_locally:
        from harness.sources import zoo

        source = _source_of(spec.builder)
        if source is not None:
            built = source.build(spec.builder, progress=progress)
        else:
            built = zoo.build_pair(spec.builder, progress=progress)
        resolved = ResolvedPair(spec, ModelRef(str(built.base_dir)), ModelRef(str(built.sft_dir)), built.info)
    else:
        reason = unavailable_reason(spec)
        if reason:
            raise ModelUnavailableError(reason)
        resolved = _with_adapter_merged(spec, progress) or ResolvedPair(spec, spec.base, spec.sft)
    check_readable_weights(resolved.base)
    check_readable_weights(resolved.sft)
    base_config, sft_config = load_config(resolved.base), load_config(resolved.sft)
    check_supported_layout(base_config, resolved.base.describe())
    check_supported_layout(sft_config, resolved.sft.describe())
    check_same_architecture(base_config, sft_config, resolved.base.describe(), resolved.sft.describe())
    for ref in (resolved.base, resolved.sft):
        check_has_tokenizer(ref)
    check_same_tokenization(
        check_readable_tokenizer(resolved.base),
        check_readable_tokenizer(resolved.sft),
        resolved.base.describe(),
        resolved.sft.describe(),
    )
    return resolved


def _with_adapter_merged(spec: ModelSpec, progress: bool) -> ResolvedPair | None:
    """The pair whose SFT is a PEFT adapter on the base: merged once into a checkpoint in the cache."""
    from harness.sources import adapters

    folder = adapters.adapter_folder(spec.sft.location, spec.sft.revision, offline=hub_offline())
    if folder is None:
        return None
    config = adapters.read_config(folder)
    check_readable_weights(ModelRef(str(folder)))  # a cut-short adapter_model.safetensors
    check_readable_weights(spec.base)
    load_config(spec.base)  # an unreadable base config is refused before the merge loads the base
    merged = adapters.merged_directory(
        checkpoint_directory(spec.base), files_fingerprint(spec.base), folder, progress=progress
    )
    described = {"source": spec.sft.describe(), **adapters.describe(config)}
    return ResolvedPair(spec, spec.base, ModelRef(str(merged)), adapter=described, adapter_dir=folder)


def load_config(ref: ModelRef):
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(ref.location, revision=ref.revision)
    except (OSError, ValueError) as error:  # a config.json that is not JSON, a model type transformers lacks
        raise UnreadableCheckpointError(
            f"{ref.describe()} has a config that transformers {transformers.__version__} cannot read "
            f"({_first_line(error)})"
        ) from error


def check_readable_tokenizer(ref: ModelRef):
    """Refuse, before any work, a tokenizer that cannot be loaded (a damaged tokenizer.json, say): the probe texts
    are encoded by each model's own, after the other model's profile was already taken. Returns the tokenizer."""
    try:
        return load_tokenizer(ref)
    except Exception as error:  # transformers and tokenizers raise many kinds for malformed tokenizer files
        raise UnreadableCheckpointError(
            f"{ref.describe()} has a tokenizer that cannot be loaded ({_first_line(error)})"
        ) from error


# Text of the kinds the probe sets and tasks hold (a word problem, a multiple-choice question, prose, code,
# numbers, accents): a pair's two tokenizers must encode each alike
TOKENIZATION_SAMPLES = (
    "A baker sells 48 loaves on Monday and 3/4 as many on Tuesday. How many loaves did she sell in all? 48 + 36 = 84",
    "Question: Which gas do plants take in during photosynthesis?\nA. Oxygen\nB. Carbon dioxide\nAnswer: B",
    "The river's delta, formed over thousands of years, shelters 1,250 species (some found nowhere else).",
    "def mean(values):\n    return sum(values) / len(values)  # an empty list raises ZeroDivisionError",
    "Café, naïve, Zürich: résumé ≥ 3.5 € — 2026-12-07 at 14:05.",
)


def check_same_tokenization(base_tokenizer, sft_tokenizer, base_name: str = "base", sft_name: str = "SFT") -> None:
    """Refuse a pair whose tokenizers encode the same text into different tokens: each model reads the probe texts
    through its own tokenizer, and every metric compares the two models' states over the same tokens (tokens added
    to the SFT's vocabulary for a chat template leave plain text alike)."""
    for text in TOKENIZATION_SAMPLES:
        base_ids, sft_ids = base_tokenizer(text).input_ids, sft_tokenizer(text).input_ids
        if base_ids != sft_ids:
            shorter = min(len(base_ids), len(sft_ids))
            where = next((i for i in range(shorter) if base_ids[i] != sft_ids[i]), shorter)
            raise PairMismatchError(
                f"{base_name} and {sft_name} tokenize the same text differently ({text[:40]!r}...: "
                f"{len(base_ids)} against {len(sft_ids)} tokens, first apart at token {where}). A layer-wise "
                "comparison feeds both models the same tokens: give the SFT the base's tokenizer files if it was "
                "fine-tuned on them, or pick the SFT that was fine-tuned from this base."
            )


def layer_count(ref: ModelRef) -> int:
    """The number of decoder layers of a checkpoint (an image-text model's text decoder)."""
    return layouts.text_config(load_config(ref)).num_hidden_layers


def vocabulary_note(base_config, sft_config) -> str | None:
    """A line for the report when the two models' vocabularies differ (an SFT that added chat tokens): the
    layers still compare one to one, each model reads the probe texts with its own tokenizer, and only a
    swap that takes the donor's head is refused."""
    base_size = layouts.text_config(base_config).vocab_size
    sft_size = layouts.text_config(sft_config).vocab_size
    if base_size == sft_size:
        return None
    return (
        f"the vocabularies differ: base {base_size} tokens, SFT {sft_size} (tokens added in fine-tuning); "
        "every layer-wise stage compares the decoder layers only"
    )


def check_same_architecture(base_config, sft_config, base_name: str = "base", sft_name: str = "SFT") -> None:
    """Refuse a pair whose layers cannot be compared one to one."""
    differences = []
    base_text, sft_text = layouts.text_config(base_config), layouts.text_config(sft_config)
    for name in ARCHITECTURE_FIELDS:
        left = getattr(base_config if name == "model_type" else base_text, name, None)
        right = getattr(sft_config if name == "model_type" else sft_text, name, None)
        if left != right:
            differences.append(f"{name}: {left!r} vs {right!r}")
    if differences:
        raise PairMismatchError(
            f"{base_name} and {sft_name} do not share one architecture ({'; '.join(differences)}). "
            "A layer-wise comparison needs the same model type, layer count and widths: "
            "pick the SFT checkpoint that was fine-tuned from this base."
        )


# The dtypes a model is loaded and measured in: torch's float8 types are floating point too, but hold weights
# only (no default dtype, no matmul on the CPU), so they are refused up front rather than mid-run.
DTYPES = ("float32", "float64", "bfloat16", "float16")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if dtype == "auto":
        return dtype
    resolved = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if resolved not in {getattr(torch, name) for name in DTYPES}:
        raise BadInputError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)} or auto")
    return resolved


def check_device(device: str) -> None:
    """Refuse, before any work, a device this machine does not have (``cuda`` without a GPU torch can use)."""
    try:
        named = torch.device(device) if device != "auto" else None
    except RuntimeError:
        raise BadInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if named is None or named.type == "cpu":
        return
    backend = getattr(torch, named.type, None)  # torch.cuda, torch.mps, torch.xpu: each says whether it is there
    if not callable(getattr(backend, "is_available", None)) or not backend.is_available():
        raise BadInputError(
            f"device {device!r}: torch {torch.__version__} has no {named.type} device here; use --device cpu (or auto)"
        )
    count = getattr(backend, "device_count", lambda: 1)()
    if named.index is not None and named.index >= count:
        raise BadInputError(f"device {device!r}: this machine has {count} {named.type} device(s)")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(ref: ModelRef, dtype: str | torch.dtype = "float32", device: str = "auto"):
    """Load one checkpoint for inference.

    ``device="auto"`` places the model with accelerate's ``device_map="auto"`` when
    a GPU is present (spreading a model larger than one device across all of them)
    and on the CPU otherwise.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": resolve_dtype(dtype), "revision": ref.revision}
    if device == "auto" and torch.cuda.is_available():
        kwargs["device_map"] = "auto"
    model = loading.load_complete(AutoModelForCausalLM, ref.location, ref.describe(), **kwargs)
    if "device_map" not in kwargs:
        model.to("cpu" if device == "auto" else device)
    check_finite_weights(model, ref.describe())
    if model.device.type == "cpu" and not cpu_attention_runs(model.dtype):
        model.set_attn_implementation("eager")
    model.eval()
    return model


@functools.cache
def cpu_attention_runs(dtype: torch.dtype) -> bool:
    """Whether torch's fused attention runs on the CPU at ``dtype`` in this process. torch 2.13 chooses its AMX
    path for bfloat16 by the CPU's features but packs the operands with the kernels of the dispatch level, so
    with ``ATEN_CPU_CAPABILITY`` below avx512 on an AMX CPU (a setting that makes builds alike across CPUs) it
    raises "pack_vnni2 is only supported when avx512 is supported" beyond a few dozen tokens. Where it does not
    run, models of that dtype attend eagerly: the same function, computed step by step."""
    if dtype not in (torch.bfloat16, torch.float16):
        return True
    probe = torch.zeros(1, 1, 512, 64, dtype=dtype)
    try:
        torch.nn.functional.scaled_dot_product_attention(probe, probe, probe, is_causal=True)
    except RuntimeError as error:
        warnings.warn(
            f"torch's fused {dtype} attention does not run on this CPU here ({error}); "
            f"{dtype} models attend eagerly instead",
            stacklevel=2,
        )
        return False
    return True


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.location, revision=ref.revision)
    if tokenizer.pad_token_id is None:  # many base checkpoints ship none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def checkpoint_directory(ref: ModelRef) -> Path:
    """The local folder of a checkpoint's files: the folder itself, or its Hugging Face cache snapshot."""
    if ref.is_local:
        return Path(ref.location).expanduser()
    snapshot = cached_snapshot(ref)
    if snapshot is not None:
        return snapshot
    if hub_offline():
        raise ModelUnavailableError(f"{ref.describe()} is not in the Hugging Face cache and the hub is offline")
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            ref.location, revision=ref.revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]
        )
    )


MODEL_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.safetensors", "*.bin")  # config, tokenizer,
# weights: every file that can change what the model computes on a text (not optimizer states or logs)


def files_fingerprint(ref: ModelRef) -> str:
    """What a cached result computed from ``ref`` depends on: its weights, its config (``rms_norm_eps``,
    ``rope_theta``, ...) and its tokenizer files. A hub revision pins all of them; a local folder is hashed.
    Reports identify a model by ``weights_fingerprint``; cache keys use this."""
    if not ref.is_local:
        return weights_fingerprint(ref)
    folder = Path(ref.location).expanduser()
    files = sorted({path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()})
    if not files:
        raise ModelUnavailableError(f"no model files in {folder}")
    return "files-sha256:" + cache.stable_hash({path.name: cache.file_sha256(path) for path in files}, length=64)


def weights_fingerprint(ref: ModelRef) -> str:
    """What identifies the weights in a report: a hub revision, or a hash of local safetensors."""
    if ref.is_local:
        return "sha256:" + cache.directory_sha256(Path(ref.location).expanduser())
    snapshot = cached_snapshot(ref)
    if snapshot is not None:
        return f"{ref.location}@{snapshot.name}"  # the snapshot folder is named by commit
    return ref.describe()
