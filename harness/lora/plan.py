"""The plan of a LoRA study (§4.4, App. A-B): which arms it trains, and the role each plays.

Every arm has the same budget (rank × layers of the full-depth arm). The plan
holds the M-segment masks of the main comparison (single segments, full depth,
the configured middle masks), the single-segment arms of each M of the inverted
U, the referee's controls (the first and the last 20% of layers, and random
layer sets the size of the mid-block) and the block finder's proposal. Arms
with the same layers are trained once.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import BadInputError
from harness.lora import runs as lora_runs
from harness.lora import tuning


@dataclass(frozen=True)
class Plan:
    arms: tuple[tuning.Arm, ...]
    roles: dict[str, list[str]]  # role -> arm labels (an arm can play several roles)
    n_layers: int


def plan_arms(
    n_layers: int,
    thresholds: dict,
    settings: lora_runs.TuneSettings,
    finder_mask: str | None = None,
    segment_counts: list[int] | None = None,
) -> Plan:
    """The arms of a study, deduplicated by their layers, and the role each plays."""
    c4 = thresholds["C4"]
    count = c4["segment_count"]
    by_layers: dict[tuple[int, ...], tuning.Arm] = {}
    roles: dict[str, list[str]] = {}

    def add(role: str, label: str, layers) -> None:
        layers = tuple(sorted(layers))
        if layers not in by_layers:
            by_layers[layers] = settings.arm(label, layers, n_layers)
        roles.setdefault(role, []).append(by_layers[layers].label)

    full = "1" * count
    masks = [*tuning.single_segment_masks(count), full, *c4["middle_masks"], *thresholds["C8"]["compared"]]
    for mask in dict.fromkeys(masks):
        add("masks", mask, tuning.mask_layers(mask, n_layers))
    roles["middle"] = tuning.middle_masks([m for m in roles["masks"] if len(m) == count])
    for m in segment_counts if segment_counts is not None else c4["inverted_u_counts"]:
        if m > n_layers:  # no arms: its verdict says the model is too shallow for this M
            roles[f"single:{m}"] = []
            continue
        for mask in tuning.single_segment_masks(m):
            add(f"single:{m}", mask, tuning.mask_layers(mask, n_layers))
    edges = tuning.edge_layers(n_layers)
    add("first20", "first20", edges["first"])
    add("last20", "last20", edges["last"])
    block = tuning.middle_block(n_layers)
    add("midblock", "midblock", block)
    for index, layers in enumerate(
        tuning.random_layer_sets(n_layers, len(block), c4["random_sets"], exclude=(tuple(block),)), start=1
    ):
        add("random", f"random{index}", layers)
    if finder_mask:
        add("finder", finder_mask, tuning.mask_layers(finder_mask, n_layers))
    return Plan(tuple(by_layers.values()), roles, n_layers)


def plan_masks(masks: list[str], n_layers: int, settings: lora_runs.TuneSettings) -> Plan:
    """A study of just the given masks (``harness tune --masks``): verdicts whose arms are present are given."""
    if not masks:
        raise BadInputError("no mask to train")
    by_layers: dict[tuple[int, ...], tuning.Arm] = {}
    roles: dict[str, list[str]] = {"masks": []}
    for mask in dict.fromkeys(masks):
        layers = tuple(tuning.mask_layers(mask, n_layers))
        by_layers.setdefault(layers, settings.arm(mask, layers, n_layers))
        roles["masks"].append(by_layers[layers].label)
    counts = {len(mask) for mask in masks}
    roles["middle"] = [m for m in tuning.middle_masks(roles["masks"]) if len(m) == max(counts)]
    return Plan(tuple(by_layers.values()), roles, n_layers)


def edge_masks(count: int) -> tuple[str, str]:
    """The first and the last single-segment masks of ``count`` segments (``10000``, ``00001``)."""
    return "1" + "0" * (count - 1), "0" * (count - 1) + "1"


def verdict_keys(plan: Plan) -> list[str]:
    """The LoRA verdicts a study of ``plan`` is asked for: C4, one C4:M<n> per single-segment count, the
    referee's control and C8."""
    counts = sorted(int(role.removeprefix("single:")) for role in plan.roles if role.startswith("single:"))
    return ["C4", *(f"C4:M{m}" for m in counts), "C4-control", "C8"]
