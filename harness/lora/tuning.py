"""Segment masks and budget-matched LoRA arms (§4.4, Fig. 7; App. A).

A mask such as ``01100`` names which of M equal segments of the decoder layers
get LoRA adapters. Arms are matched on budget: the sum over adapted layers of
the rank equals the full-depth arm's (the paper's own matching), so an arm on
fewer layers gets a higher rank. The effective LoRA scale alpha / r is kept
constant by default; the paper code's fixed alpha (128 at every rank, which
changes the scale from arm to arm) is an option, so that confound can be
measured rather than assumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness import depth
from harness.depth import segments
from harness.errors import BadInputError
from harness.sources.adapters import peft_quietly
from harness.sources.layouts import ATTENTION_MODULES, DEFAULT_LAYOUT, Layout, layout_of

SCALING_POLICIES = ("constant_ratio", "fixed_alpha")


class MaskError(BadInputError):
    """A segment mask that is not a string of 0s and 1s with at least one 1."""


def parse_mask(mask: str) -> tuple[int, ...]:
    """``"01100"`` → (1, 2): the indices of the selected segments."""
    if not mask or set(mask) - {"0", "1"}:
        raise MaskError(f"a mask is a string of 0 and 1, one per segment; got {mask!r}")
    chosen = tuple(i for i, bit in enumerate(mask) if bit == "1")
    if not chosen:
        raise MaskError(f"mask {mask!r} selects no segment")
    return chosen


def mask_layers(mask: str, n_layers: int) -> list[int]:
    """The 0-based decoder layers a mask adapts, over len(mask) equal segments."""
    parts = segments(n_layers, len(mask))
    return [layer for index in parse_mask(mask) for layer in parts[index]]


def single_segment_masks(count: int) -> list[str]:
    """``10000``, ``01000``, ... for M = count (the arms of the inverted-U test)."""
    return ["".join("1" if i == j else "0" for i in range(count)) for j in range(count)]


def middle_masks(masks: list[str]) -> list[str]:
    """The masks whose segments all lie in the middle of depth (``depth.mask_group``): the paper's middle
    configurations."""
    return [mask for mask in masks if parse_mask(mask) and depth.mask_group(mask) == "middle"]


def edge_layers(n_layers: int) -> dict[str, list[int]]:
    """The first and the last 20% of the decoder layers (``depth.layer_groups``)."""
    groups = depth.layer_groups(n_layers)
    return {"first": groups["first"], "last": groups["last"]}


def middle_block(n_layers: int) -> list[int]:
    """The layers between the first and the last 20% of depth: the paper's mid-block."""
    return depth.layer_groups(n_layers)["middle"]


def random_layer_sets(
    n_layers: int, size: int, count: int, seed: int = 0, exclude: tuple[tuple[int, ...], ...] = ()
) -> list[tuple[int, ...]]:
    """``count`` distinct random sets of ``size`` layers (the referee's equal-budget control), none in ``exclude``."""
    if not 1 <= size <= n_layers:
        raise BadInputError(f"cannot draw {size} of {n_layers} layers")
    rng = random.Random(f"random-layers|{n_layers}|{size}|{seed}")
    drawn: list[tuple[int, ...]] = []
    for _ in range(1000 * count):
        if len(drawn) == count:
            break
        layers = tuple(sorted(rng.sample(range(n_layers), size)))
        if layers not in drawn and layers not in exclude:
            drawn.append(layers)
    if len(drawn) < count:
        raise BadInputError(
            f"only {len(drawn)} distinct sets of {size} of {n_layers} layers can be drawn; {count} were asked for"
        )
    return drawn


@dataclass(frozen=True)
class Arm:
    """One LoRA arm: where it adapts, at which rank and scale, and what it costs.

    ``label`` names it in reports: its mask (``01100``), or a control's name
    (``random-1``) when its layers are not a union of equal segments.
    """

    label: str
    layers: tuple[int, ...]
    rank: int
    alpha: float
    modules: tuple[str, ...]
    budget: int  # Σ over adapted layers of the rank (times the modules per layer)
    full_budget: int

    @property
    def budget_error(self) -> float:
        return abs(self.budget - self.full_budget) / self.full_budget

    @property
    def mask(self) -> str | None:
        """The segment mask when the label is one, else None."""
        return self.label if set(self.label) <= {"0", "1"} else None


def layer_set_arm(
    label: str,
    layers: list[int] | tuple[int, ...],
    n_layers: int,
    full_rank: int,
    modules: tuple[str, ...] = ATTENTION_MODULES,
    scaling: str = "constant_ratio",
    ratio: float = 2.0,
    fixed_alpha: float = 128.0,
) -> Arm:
    """The arm on ``layers`` whose rank × layers matches the full-depth arm at ``full_rank``.

    The rank is rounded to the nearest integer, so the budget is off by at most
    half a rank per adapted layer; ``Arm.budget_error`` records by how much.
    """
    if scaling not in SCALING_POLICIES:
        raise BadInputError(f"scaling must be one of {SCALING_POLICIES}, got {scaling!r}")
    if full_rank < 1:
        raise BadInputError("full_rank must be at least 1")
    layers = tuple(sorted(set(layers)))
    if not layers or layers[0] < 0 or layers[-1] >= n_layers:
        raise BadInputError(f"arm {label!r}: layers {list(layers)} are not within 0..{n_layers - 1}")
    full_budget = full_rank * n_layers * len(modules)
    rank = max(1, round(full_rank * n_layers / len(layers)))
    alpha = ratio * rank if scaling == "constant_ratio" else fixed_alpha
    return Arm(label, layers, rank, float(alpha), tuple(modules), rank * len(layers) * len(modules), full_budget)


def budget_matched_arm(
    mask: str,
    n_layers: int,
    full_rank: int,
    modules: tuple[str, ...] = ATTENTION_MODULES,
    scaling: str = "constant_ratio",
    ratio: float = 2.0,
    fixed_alpha: float = 128.0,
) -> Arm:
    """The arm of segment mask ``mask``, budget-matched to the full-depth arm (see ``layer_set_arm``)."""
    return layer_set_arm(mask, mask_layers(mask, n_layers), n_layers, full_rank, modules, scaling, ratio, fixed_alpha)


def lora_config(arm: Arm, layout: Layout = DEFAULT_LAYOUT):
    """A peft LoraConfig that adapts exactly the arm's layers and modules, named in full within the family's
    decoder layers (an image-text model's vision tower has layers and q_proj too; and peft rewrites a pattern
    for a mixture of experts)."""
    from peft import LoraConfig

    layout.lora_targets(tuple(arm.modules))  # refuses a projection the family does not have
    modules = dict.fromkeys(layout.modules[p] for p in arm.modules)
    targets = [f"{layout.layers}.{layer}.{module}" for layer in arm.layers for module in modules]
    return LoraConfig(
        r=arm.rank, lora_alpha=arm.alpha, lora_dropout=0.0, target_modules=targets, bias="none", task_type="CAUSAL_LM"
    )


def apply_arm(model, arm: Arm):
    """Wrap ``model`` (changed in place) with the arm's adapters, and check peft adapted what was asked.

    A target that matches nothing fails silently in peft, so the adapted modules
    are counted: exactly layers × modules, on exactly the arm's layers.
    """
    from peft import get_peft_model

    layout = layout_of(model)
    targets = layout.lora_targets(tuple(arm.modules))
    with peft_quietly():
        wrapped = get_peft_model(model, lora_config(arm, layout))
    adapted = [name for name, module in wrapped.named_modules() if hasattr(module, "lora_A") and module.lora_A]
    expected = len(arm.layers) * len(targets)  # a fused Q/K/V module is one adapter
    layers_seen = sorted({int(name.split(".layers.")[1].split(".")[0]) for name in adapted})
    if len(adapted) != expected or layers_seen != sorted(arm.layers):
        raise RuntimeError(
            f"peft adapted {len(adapted)} modules on layers {layers_seen}; the arm {arm.label} asks "
            f"for {expected} on layers {list(arm.layers)}"
        )
    return wrapped


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
