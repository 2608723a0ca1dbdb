"""Weight change per layer (eq. 1), streamed tensor by tensor from safetensors checkpoints.

Tensors are found through the family's layout (``harness.sources.layouts``), so a fused Q/K/V projection,
a GPT-NeoX or an image-text checkpoint are read like a Llama: eq. 1 sums ‖W_s − W_b‖²_F over the rows that
compute Q, K, V and O, whatever module holds them. A mixture of experts' router and experts are kept
apart from eq. 1 (``weight_change_by_part``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

from harness.errors import BadInputError
from harness.metrics.weights import layer_weight_change, squared_change
from harness.sources.layouts import ATTENTION_MODULES, MLP_MODULES, Layout, layout_of_checkpoint

__all__ = [
    "ATTENTION_MODULES",
    "MLP_MODULES",
    "CheckpointError",
    "safetensors_index",
    "weight_change",
    "weight_change_by_part",
]


class CheckpointError(BadInputError):
    """A checkpoint folder lacks safetensors weights, or two checkpoints do not match tensor by tensor."""


def safetensors_index(directory: Path) -> dict[str, Path]:
    """Map each tensor name of a checkpoint folder to the safetensors file that holds it."""
    from safetensors import safe_open

    directory = Path(directory)
    index_file = directory / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text())["weight_map"]
        return {name: directory / shard for name, shard in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} holds no safetensors weights; weight change reads only safetensors")
    mapping: dict[str, Path] = {}
    for path in files:
        with safe_open(path, framework="pt") as handle:
            mapping.update({name: path for name in handle.keys()})
    return mapping


def _read(path: Path, name: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return handle.get_tensor(name)


def _config(directory: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(directory)


def _layer_tensors(layout: Layout, index: dict[str, Path], directory: Path):
    """(name, layer from 1, what it is) for every layer weight the layout names, in a stable order."""
    prefix = layout.disk_layer_prefix(index) or layout.disk_layers[0]
    for name in sorted(index):
        if not name.startswith(prefix + "."):
            continue
        number, _, suffix = name[len(prefix) + 1 :].partition(".")
        if not number.isdigit():
            continue
        part = layout.part_of(suffix)
        if part is not None:
            yield name, int(number) + 1, part


def weight_change_by_part(
    base: Path, sft: Path, modules: Iterable[str] = ATTENTION_MODULES, relative: bool = False
) -> dict[str, dict[int, float]]:
    """Per decoder layer l (from 1): ``"eq1"``, ΔW^(l) = sqrt(Σ_{W ∈ Θ^(l)} ‖W_s − W_b‖²_F) over the rows of
    ``modules`` (eq. 1; Llama's projection names, found in whatever module the family keeps them); and, for a
    mixture of experts, ``"router"`` and ``"experts"`` (all experts of the layer together).

    Only two tensors are in memory at a time (compared a block of rows at a time in float64), so a 32B
    pair needs the memory of one tensor pair, not of two models. With ``relative`` each value is divided by
    the base's own norm over the same tensors.
    """
    modules = tuple(modules)
    base, sft = Path(base), Path(sft)
    layout = layout_of_checkpoint(base)
    base_index, sft_index = safetensors_index(base), safetensors_index(sft)
    config = None
    squared: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    base_squared: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for name, layer, part in _layer_tensors(layout, base_index, base):
        if part in ("router", "experts"):
            pieces = {part: None}
        else:
            wanted = [p for p in layout.projections_of(part) if p in modules]
            if not wanted:
                continue
            whole = len(wanted) == len(layout.projections_of(part))
            pieces = {"eq1": None} if whole else {"eq1": wanted}
        if name not in sft_index:
            raise CheckpointError(f"tensor {name} is in the base checkpoint but not in the SFT one")
        w_base, w_sft = _read(base_index[name], name), _read(sft_index[name], name)
        if w_base.shape != w_sft.shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(w_base.shape)} in base, {tuple(w_sft.shape)} in SFT")
        for key, projections in pieces.items():
            if projections is None:
                change, size = squared_change(w_base, w_sft)
            else:  # a fused module of which only some projections are asked for: their rows only
                config = config or _config(base)
                rows_base = layout.split_rows(part, w_base, config)
                rows_sft = layout.split_rows(part, w_sft, config)
                sums = [squared_change(rows_base[p], rows_sft[p]) for p in projections]
                change, size = sum(s[0] for s in sums), sum(s[1] for s in sums)
            squared[key][layer] += change
            base_squared[key][layer] += size
        del w_base, w_sft
    if not squared.get("eq1"):
        raise CheckpointError(
            f"no tensors of {', '.join(modules)} found in {base}: is this a decoder-only "
            f"checkpoint of the {layout.family} layout?"
        )
    return {
        key: layer_weight_change(values, base_squared[key] if relative else None) for key, values in squared.items()
    }


def weight_change(
    base: Path, sft: Path, modules: Iterable[str] = ATTENTION_MODULES, relative: bool = False
) -> dict[int, float]:
    """ΔW^(l) = sqrt(Σ_{W ∈ Θ^(l)} ‖W_s − W_b‖²_F) for each decoder layer l (eq. 1), Θ = ``modules``.

    Layers are numbered from 1 (layer 0 is the embedding output, which has no projections). See
    ``weight_change_by_part`` for how tensors are read.
    """
    return weight_change_by_part(base, sft, modules, relative)["eq1"]
