"""Weight change per layer (eq. 1), streamed tensor by tensor from safetensors checkpoints."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")  # Θ^(l) of §3.2
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
LAYER_PATTERN = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.weight$")


class CheckpointError(ValueError):
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


def _squared_sums(w_base: torch.Tensor, w_sft: torch.Tensor, block_elements: int = 1 << 21) -> tuple[float, float]:
    """‖W_s − W_b‖²_F and ‖W_b‖²_F in float64, a block of rows at a time: the float64 temporaries stay a few MB
    instead of several copies of the tensor (an MLP matrix of a 7B model is 45M values)."""
    a, b = w_base.reshape(w_base.shape[0], -1), w_sft.reshape(w_sft.shape[0], -1)
    rows = max(1, block_elements // max(1, a.shape[1]))
    change = size = 0.0
    for start in range(0, a.shape[0], rows):
        block_base = a[start:start + rows].to(torch.float64)
        change += float(((b[start:start + rows].to(torch.float64) - block_base) ** 2).sum())
        size += float((block_base ** 2).sum())
    return change, size


def weight_change(base: Path, sft: Path, modules: Iterable[str] = ATTENTION_MODULES,
                  relative: bool = False) -> dict[int, float]:
    """ΔW^(l) = sqrt(Σ_{W ∈ Θ^(l)} ‖W_s − W_b‖²_F) for each decoder layer l (eq. 1).

    Layers are numbered from 1 (layer 0 is the embedding output, which has no
    projections). Only two tensors are in memory at a time (in their own dtype,
    compared a block of rows at a time in float64), so a 32B pair needs the
    memory of one tensor pair, not of two models. With ``relative`` each
    layer's value is divided by sqrt(Σ ‖W_b‖²_F).
    """
    modules = tuple(modules)
    base_index, sft_index = safetensors_index(Path(base)), safetensors_index(Path(sft))
    squared: dict[int, float] = defaultdict(float)
    base_squared: dict[int, float] = defaultdict(float)
    for name, base_file in sorted(base_index.items()):
        match = LAYER_PATTERN.search(name)
        if not match or match.group(2) not in modules:
            continue
        if name not in sft_index:
            raise CheckpointError(f"tensor {name} is in the base checkpoint but not in the SFT one")
        w_base, w_sft = _read(base_file, name), _read(sft_index[name], name)
        if w_base.shape != w_sft.shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(w_base.shape)} in base, {tuple(w_sft.shape)} in SFT")
        layer = int(match.group(1)) + 1
        change, size = _squared_sums(w_base, w_sft)
        squared[layer] += change
        base_squared[layer] += size
        del w_base, w_sft
    if not squared:
        raise CheckpointError(f"no tensors of {modules} found in {base}: is this a decoder-only checkpoint?")
    if relative:
        return {layer: math.sqrt(squared[layer] / base_squared[layer]) for layer in sorted(squared)}
    return {layer: math.sqrt(squared[layer]) for layer in sorted(squared)}
