"""Planted pairs whose answer is known: the controls every claim predicate is tested on.

Each control takes one model of the tiny OLMo-2 pair as its "base" model and,
as its "SFT" model, the same weights with Gaussian noise added to every decoder layer's
Q/K/V/O projections. The noise of layer l has a root-mean-square of
``scale(l / L)`` times that of the weight it perturbs:

- ``planted_late``: 0.02·(l/L) everywhere plus 100·((l/L − 0.8)/0.2)² in the last
  20% of layers. C1, C2 and C7 must hold on it.
- ``planted_uniform``: 3.0 at every layer. C1, C2 and C7 must fail.
- ``planted_early``: the mirror image of ``planted_late``, largest at layer 1.
  C1, C2 and C7 must fail.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness import cache, zoo
from harness.metrics import ATTENTION_MODULES, MLP_MODULES

CONTROLS_FORMAT = 4
SOURCE_PAIR = "tiny_olmo2"


@dataclass(frozen=True)
class Control:
    name: str
    profile: Callable[[float], float]  # relative depth in (0, 1] -> noise scale
    expected: dict[str, bool]  # claim -> whether it must hold
    description: str
    clean: str = "base"  # which model of the tiny pair is the clean side: a swap control needs a competent one


def _tail_profile(depth: float) -> float:
    """A small perturbation that grows with depth, and a large one in the last 20% of layers."""
    return 0.02 * depth + 100.0 * max(0.0, (depth - 0.8) / 0.2) ** 2


CONTROLS: dict[str, Control] = {control.name: control for control in (
    Control("planted_late", _tail_profile, {"C1": True, "C2": True, "C7": True},
            "a perturbation growing with depth, almost all of it in the last 20% of layers"),
    Control("planted_uniform", lambda depth: 3.0, {"C1": False, "C2": False, "C7": False},
            "the same perturbation at every layer"),
    Control("planted_early", lambda depth: _tail_profile(1.1 - depth), {"C1": False, "C2": False, "C7": False},
            "the mirror image of planted_late: largest at the first layer, shrinking with depth"),
    # Layer-swap controls (C3), built on the fine-tuned tiny model, which is good at the scored task:
    # swapping a perturbed block into it harms most where the perturbation is; swapping a clean
    # block into the perturbed copy helps most there.
    Control("planted_edges", lambda depth: 3.0 if depth <= 0.2 or depth > 0.8 else 0.02,
            {"C3:base_with_sft_block": True, "C3:sft_with_base_block": False},
            "a large perturbation in the first and last 20% of layers, a small one between", clean="sft"),
    Control("planted_middle", lambda depth: 3.0 if 0.2 < depth <= 0.8 else 0.02,
            {"C3:base_with_sft_block": False, "C3:sft_with_base_block": True},
            "a large perturbation between 20% and 80% of depth, a small one in the first and last 20%", clean="sft"),
)}


def _planted_modules(layer):
    yield from ((name, getattr(layer.self_attn, name)) for name in ATTENTION_MODULES)
    yield from ((name, getattr(layer.mlp, name)) for name in MLP_MODULES)


def _residual_write_gains(layer) -> list[torch.Tensor]:
    """The weights that set how strongly a layer writes into the residual stream.

    OLMo-2 normalises each block's output before adding it (post-attention and
    post-feedforward norms), so their gains set the write's size; a pre-norm
    model (Mistral) has no such norm, and its output projections do.
    """
    if hasattr(layer, "post_feedforward_layernorm"):
        return [layer.post_attention_layernorm.weight, layer.post_feedforward_layernorm.weight]
    return [layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight]


def plant(model, control: Control, seed: int = 0) -> None:
    """Perturb every decoder layer of ``model`` in place by the control's depth profile.

    Layer l gets Gaussian noise of relative RMS ``scale`` on all its projections,
    and its writes into the residual stream are amplified by (1 + ``scale``): a
    change that moves the representation as surely as it moves the weights.
    """
    layers = model.model.layers
    count = len(layers)
    with torch.no_grad():
        for index, layer in enumerate(layers, start=1):
            scale = control.profile(index / count)
            for module_index, (_, module) in enumerate(_planted_modules(layer)):
                weight = module.weight
                generator = torch.Generator().manual_seed(seed * 100_003 + index * 101 + module_index)
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.add_(noise * scale * weight.pow(2).mean().sqrt())
            for gain in _residual_write_gains(layer):
                gain.mul_(1 + scale)


def build_control(name: str, progress: bool = True) -> zoo.BuiltPair:
    """The planted pair ``name``, built from the tiny base on first use and cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    control = CONTROLS[name]
    source = zoo.build_pair(SOURCE_PAIR, progress=progress)
    key = cache.stable_hash({"source": source.info["key"], "control": name, "format": CONTROLS_FORMAT,
                             "clean": control.clean, "scales": [control.profile(i / 10) for i in range(1, 11)]})
    clean_dir = source.base_dir if control.clean == "base" else source.sft_dir
    directory = cache.cache_root() / "zoo" / f"{name}-{key}"
    if not cache.is_complete(directory):
        with cache.atomic_directory(directory) as scratch:
            shutil.copytree(clean_dir, scratch / "base")
            model = AutoModelForCausalLM.from_pretrained(clean_dir, dtype=torch.float32)
            plant(model, control)
            model.save_pretrained(scratch / "sft")
            AutoTokenizer.from_pretrained(clean_dir).save_pretrained(scratch / "sft")
            cache.write_json_atomic(scratch / "build.json", {"name": name, "source": source.info["key"],
                                                              "description": control.description,
                                                              "expected": control.expected})
    info = json.loads((directory / "build.json").read_text())
    return zoo.BuiltPair(name=name, base_dir=directory / "base", sft_dir=directory / "sft", info=info)
