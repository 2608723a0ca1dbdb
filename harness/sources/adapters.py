"""An SFT published as a PEFT LoRA adapter on its base: a folder (or hub id) with ``adapter_config.json`` and
``adapter_model.safetensors``.

Every stage of the harness reads an SFT as a checkpoint folder (the profile loads it, a swap streams its
layers, lm-eval scores it), so the adapter is loaded on the base and merged in memory once, and the merged
model is saved in the cache, keyed by the base's and the adapter's files: one model in memory at a time,
and no second merge on a later run. The weight change of eq. 1 needs no merge at all: per adapted module,
ΔW = scale · B·A, read from the adapter's own tensors (``adapter_weight_change``).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch

from harness import cache
from harness.errors import BadInputError
from harness.metrics.weights import layer_weight_change
from harness.sources import layouts, loading

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MERGE_FORMAT = 1  # bump when how a merged checkpoint is made changes


class AdapterError(BadInputError):
    """An adapter the harness cannot apply: not LoRA, missing weights, or made for another base."""


# peft's warnings that say nothing to a harness user: peft reads a property transformers 5 renamed, on every model
# it wraps. Every other warning passes.
EXPECTED_PEFT_WARNINGS = (r"`is_gradient_checkpointing` is deprecated",)


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """Wrap a model with peft (an arm's adapters, or a published adapter) without its expected warnings."""
    with warnings.catch_warnings():
        for message in EXPECTED_PEFT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield


def adapter_folder(location: str, revision: str | None = None, offline: bool = True) -> Path | None:
    """The local folder of an adapter (a folder, or a hub id in the cache or, unless ``offline``,
    downloaded); None when ``location`` is not an adapter."""
    folder = Path(location).expanduser()
    if folder.is_dir():
        return folder if (folder / ADAPTER_CONFIG).is_file() else None
    if location.startswith(("/", ".", "~")):
        return None
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(location, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (any reason): ask the hub below, or it is no adapter
        snapshot = None
    if snapshot is not None and (snapshot / ADAPTER_CONFIG).is_file():
        return snapshot
    if offline:
        return None
    from huggingface_hub import file_exists

    try:
        if not file_exists(location, ADAPTER_CONFIG, revision=revision):
            return None
    except Exception:  # noqa: BLE001 - no such repository, or no access: not an adapter we can read
        return None
    return Path(
        snapshot_download(
            location, revision=revision, allow_patterns=[ADAPTER_CONFIG, *ADAPTER_WEIGHTS, "*.json", "*.model", "*.txt"]
        )
    )


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (UnicodeDecodeError, ValueError) as error:
        raise AdapterError(f"{folder / ADAPTER_CONFIG} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{folder / ADAPTER_CONFIG} is not a JSON object of LoRA settings")
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{folder} is a {config.get('peft_type')} adapter; the harness applies LoRA adapters")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise AdapterError(f"{folder} has {ADAPTER_CONFIG} but no {' or '.join(ADAPTER_WEIGHTS)}")
    return config


def describe(config: dict) -> dict:
    """What a report records of an adapter: its config's settings that change the merged model."""
    keys = (
        "base_model_name_or_path",
        "r",
        "lora_alpha",
        "use_rslora",
        "use_dora",
        "target_modules",
        "layers_to_transform",
        "modules_to_save",
        "rank_pattern",
        "alpha_pattern",
        "revision",
    )
    return {key: config.get(key) for key in keys if config.get(key) not in (None, {}, [])}


def merged_directory(base_dir: Path, base_fingerprint: str, adapter_dir: Path, progress: bool = True) -> Path:
    """The base with the adapter merged in, in the base checkpoint's own dtype, saved once in the cache
    (safetensors, with the adapter's tokenizer when it ships one, else the base's)."""
    files = {
        path.name: cache.file_sha256(path)
        for path in sorted(adapter_dir.glob("*"))
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".model", ".txt")
    }
    key = cache.stable_hash({"format": MERGE_FORMAT, "base": base_fingerprint, "adapter": files})
    target = cache.cache_root() / "merged-adapters" / key

    def build(scratch: Path) -> None:
        from peft import PeftModel
        from tqdm.auto import tqdm
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with tqdm(total=3, desc=f"merging the adapter {adapter_dir.name}", disable=not progress) as bar:
            model = loading.load_complete(AutoModelForCausalLM, base_dir, str(base_dir), dtype="auto")
            tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:  # the SFT added (chat) tokens
                model.resize_token_embeddings(len(tokenizer))
            bar.update()
            try:
                with peft_quietly():
                    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
            except RuntimeError as error:
                if "size mismatch" not in str(error):
                    raise
                raise AdapterError(
                    f"the adapter {adapter_dir} does not fit the base {base_dir} (its tensors have "
                    "other shapes): name the base it was trained on"
                ) from None
            except ValueError as error:  # peft's NoMatchingPeftModuleError
                if "not found in the base model" not in str(error):
                    raise
                targets = read_config(adapter_dir).get("target_modules")
                raise AdapterError(
                    f"the adapter {adapter_dir} does not fit the base {base_dir} (none of its target modules "
                    f"{targets} is in it): name the base it was trained on"
                ) from None
            bar.update()
            merged.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
            bar.update()
        del model, merged

    cache.build_once(target, build)
    return target


def _scale(config: dict, module: str) -> tuple[float, int]:
    """LoRA's scale (alpha / r, or alpha / √r under rsLoRA) and rank for a module, with per-module patterns."""
    import re

    rank, alpha = config["r"], config.get("lora_alpha", config["r"])
    for pattern, value in (config.get("rank_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            rank = value
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            alpha = value
    return (alpha / rank**0.5 if config.get("use_rslora") else alpha / rank), rank


def adapter_deltas(adapter_dir: Path):
    """(module name as in the base model, ΔW = scale · B·A) for each adapted module, one at a time."""
    from safetensors import safe_open

    config = read_config(adapter_dir)
    if config.get("use_dora"):
        raise AdapterError("a DoRA adapter rescales each column of W + BA: its change is not B·A alone")
    if config.get("fan_in_fan_out"):
        raise AdapterError("an adapter of Conv1D layers (fan_in_fan_out) is not of a supported family")
    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise AdapterError(f"{adapter_dir} holds its weights as adapter_model.bin; save it as safetensors")
    with safe_open(path, framework="pt") as handle:
        names = list(handle.keys())
        for name in sorted(n for n in names if n.endswith("lora_A.weight")):
            module = name.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
            b_name = name.replace("lora_A.weight", "lora_B.weight")
            if b_name not in names:
                raise AdapterError(f"{adapter_dir}: {name} has no lora_B")
            scale, _ = _scale(config, module)
            a = handle.get_tensor(name).to(torch.float64)
            b = handle.get_tensor(b_name).to(torch.float64)
            yield module, scale * (b @ a)


def adapter_weight_change(
    adapter_dir: Path, base_dir: Path, modules=layouts.ATTENTION_MODULES
) -> dict[str, dict[int, float]]:
    """Eq. 1 per layer from the adapter alone: Σ over the adapted Q/K/V/O of ‖scale · B·A‖²_F (the rows of
    the asked projections, for a family that fuses them). Layers the adapter leaves alone change by 0."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_dir)
    layout = layouts.layout_of(config)
    n_layers = layouts.text_config(config).num_hidden_layers
    squared: dict[int, float] = defaultdict(float)
    prefix = layout.layers + "."
    adapter_config = read_config(adapter_dir)
    saved = [m for m in adapter_config.get("modules_to_save") or [] if m not in ("embed_tokens", "lm_head")]
    if saved:
        raise AdapterError(
            f"the adapter saves whole modules {saved} inside the layers: their change is not B·A; "
            "compute it from the merged checkpoint"
        )
    for module, delta in adapter_deltas(adapter_dir):
        if not module.startswith(prefix):
            continue
        number, _, path = module[len(prefix) :].partition(".")
        wanted = [p for p in layout.projections_of(path) if p in modules]
        if not wanted:
            continue
        if len(wanted) == len(layout.projections_of(path)):
            squared[int(number) + 1] += float((delta**2).sum())
        else:
            rows = layout.split_rows(path, delta, config)
            squared[int(number) + 1] += sum(float((rows[p] ** 2).sum()) for p in wanted)
    return {"eq1": layer_weight_change({layer: squared.get(layer, 0.0) for layer in range(1, n_layers + 1)})}
