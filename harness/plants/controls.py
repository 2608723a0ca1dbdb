"""Planted pairs whose answer is known: the controls every claim predicate is tested on.

Each control takes one model of the tiny OLMo-2 pair as its "base" model (or a
model built from it by a ``base_construction``) and, as its "SFT" model, the same
weights changed by a known construction. Besides those listed here: the
``late_dose`` ladder (``LADDERS``), C5's trained reader placed among identity
blocks (``harness.plants.emergence``), C6's network built by hand (``stages``) and the
LoRA study's trapped models (``trap``), whose arms are trained and scored. The
default construction (``noise``) adds Gaussian noise to every decoder layer's
Q/K/V/O and MLP projections. The noise of layer l has a root-mean-square of
``scale(l / L)`` times that of the projection it perturbs, taken over all layers:

- ``planted_late``: 0.02·(l/L) everywhere plus 100·((l/L − 0.8)/0.2)² in the last
  20% of layers. C1, C2 and C7 must hold on it.
- ``planted_uniform``: 3.0 at every layer. C1, C2 and C7 must fail, and so must
  the sparsity hypothesis (its residual writes are amplified fourfold).
- ``planted_early``: the mirror image of ``planted_late``, largest at layer 1.
  C1, C2 and C7 must fail.

Controls for the directional hypotheses of §3.3-3.4 (``harness.verdicts.directional``):

- ``planted_identical``: scale 0 everywhere, so the SFT is an exact copy of the
  base. Every directional hypothesis must be refuted (a change of exactly zero
  lowers and raises nothing), and so must C1 (no drop).
- ``planted_bottleneck`` (construction ``bottleneck``, ``confine``): the SFT's
  residual stream is confined to one coordinate at every layer. Its entropies
  are then 0, its effective rank 1 and its rank deficiency min(N, D) − 1, the
  extreme values these metrics can take, and at least (D − 1)/D of its entries
  are zero: prompt entropy, dataset entropy and effective rank must fall, rank
  deficiency and sparsity must rise, in every band.
- ``planted_smooth`` (construction ``smooth``, ``smooth``): the first layer's
  attention is made uniform over the prefix and its write amplified, so every
  state is dominated by the running mean of the tokens: curvature must fall.
- ``planted_bottleneck_reversed`` and ``planted_smooth_reversed``: the same pairs
  with base and SFT swapped (``reverse_of``), so the same hypotheses must be
  refuted. They reuse the forward pairs' models and profiles.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness import cache, depth
from harness.plants import emergence
from harness.sources import models, zoo
from harness.sources.layouts import ATTENTION_MODULES, MLP_MODULES, decoder_layers
from harness.verdicts.directional import HYPOTHESES

CONTROLS_FORMAT = 5  # 5: noise relative to each projection's RMS over all layers
SOURCE_PAIR = "tiny_olmo2"


# The planted controls (about forty pairs, every one profiled in each run of the tests) are profiled on 300
# pooled samples rather than §4.1's 1,000: a third of the forward passes and resampling. Their intervals
# are wider, which makes a planted answer harder to reach, never easier; the token-level samples stay.
CONTROL_POOLED_SAMPLES = 300


def control_pooled_samples(name: str, asked: int) -> int:
    """How many pooled samples pair ``name`` is profiled on when ``asked`` are: at most
    ``CONTROL_POOLED_SAMPLES`` for a planted control (the tests and the command line share its profile)."""
    return min(asked, CONTROL_POOLED_SAMPLES) if name in CONTROLS else asked


@dataclass(frozen=True)
class Control:
    name: str
    profile: Callable[[float], float]  # relative depth in (0, 1] -> noise scale
    expected: dict[str, bool]  # claim -> whether it must hold
    description: str
    clean: str = "base"  # which model of the tiny pair is the clean side: a swap control needs a competent one
    construction: str = "noise"  # how the planted model is made from the clean one: a key of CONSTRUCTIONS
    reverse_of: str | None = None  # this pair is that control run backwards: its planted model is the base
    unanswered: dict[str, str] = field(default_factory=dict)  # claim -> why the control has no answer for it
    # claim -> the conditions that must fail, and no other: a negative that isolates one sub-condition
    isolates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    base_construction: str | None = None  # how the base is made from the clean model (None: the clean model)
    ladder: str | None = None  # the dose-response ladder this pair is a rung of (``LADDERS``)
    dose: float = 0.0  # its planted dose on that ladder


def _tail(depth: float) -> float:
    """0 before the last 20% of layers, rising to 1 at the last layer."""
    return max(0.0, (depth - 0.8) / 0.2) ** 2


def _tail_profile(depth: float) -> float:
    """A small perturbation that grows with depth, and a large one in the last 20% of layers."""
    return 0.02 * depth + 100.0 * max(0.0, (depth - 0.8) / 0.2) ** 2


def _none(depth: float) -> float:
    return 0.0


# A pair in which no Q/K/V/O weight moved has no ratio, no correlation and no peak of weight change (eq. 1):
# the statistics of C2 and C7 are undefined (NaN), so they are inconclusive, never refuted, and such a
# control can give them no answer.
_NO_WEIGHT_CHANGE = {
    "C2": "no Q/K/V/O weight (eq. 1) changed: the ratio, the rank correlation and the peak of C2 are undefined",
    "C7": "no Q/K/V/O weight (eq. 1) changed: a correlation with a constant weight change is undefined",
}
_ONE_LAYER = (
    "the weight change is non-zero at the first layer only: its correlation with the representation "
    "metrics across layers is not set by the construction"
)
_UNDETERMINED = "the construction does not determine which way this metric moves (measured and reported only)"


def _directional(answered: dict[str, bool]) -> dict[str, str]:
    """The reason why a control has no answer for each directional hypothesis it does not determine."""
    return {claim: _UNDETERMINED for claim in HYPOTHESES if claim not in answered}


_OTHER_THAN_C6 = {
    claim: "built for C6 alone: the other claims' answers are not set by its construction"
    for claim in ("C1", "C2", "C5", "C7", *HYPOTHESES)
}
_ONLY_C5 = {
    claim: "built for C5 alone: the other claims' answers are not set by its construction"
    for claim in ("C1", "C2", "C6", "C7", *HYPOTHESES)
}
_ONLY_C1 = {
    claim: "built for C1 alone: the other claims' answers are not set by its construction"
    for claim in ("C2", "C5", "C6", "C7", *HYPOTHESES)
}
_ONLY_LORA = {
    claim: "built for the LoRA study alone: the other claims' answers are not set by its construction"
    for claim in ("C1", "C2", "C5", "C6", "C7", *HYPOTHESES)
}
# Measured: two steps on the trapped last segment halve the exact match (0.52 to 0.28) but move the
# retention perplexity by 4%, within the seed-to-seed spread of the middle arms'. Making the last layers'
# writes larger (x1.5, x3) makes them move it more, but so unevenly across seeds (825 to 1,878 against the
# base's 720) that three seeds' interval still reaches zero; at x10 the untuned model loses its skill. On
# MMLU-format text the trapped last layers do move it (by 90,000 to 120,000 against the middle arms' 8,000),
# but there the wrecked full-depth arm's perplexity lands near the base's (163,000 against 131,000).
_NO_SKILL = (
    "the pretrained model has no task skill to keep (every arm scores 0 after two steps): only what "
    "the arms forget is set by the construction"
)
# Measured on two builds of the tiny pair: full LoRA's retention distance minus the best middle arm's was
# -331 [-567, -92] on one and -13.3 [-237, 9.9] on the other (an AVX-512/AMX machine).
_THROWN_OFF_RETENTION = (
    "a 1,000-fold trap throws an adapted model off: the perplexity of a thrown-off arm is "
    "heavy-tailed across seeds, so which arm forgets least depends on the build's last bits "
    "(planted_lora_middle_forgets is C8's negative)"
)
# Measured on three builds of the tiny pair (2 steps; 1 step did not settle them either): the M = 3 and M = 10
# inverted U went the planted way on one and was inconclusive on another (planted_lora_mid_block at M = 3:
# -0.071, at M = 10: -0.023; planted_lora_edges at M = 3: -0.28 [-0.65, 0.11], at M = 10: -0.013).
_OTHER_SEGMENTS = {
    "C4:M3": (
        "with 10 layers the M = 3 segments (0-3, 4-6, 7-9) cut across the trapped 20% bands, so each edge "
        "segment holds trapped and free layers: how much of the skill its arm keeps is set by the build"
    ),
    "C4:M10": (
        "a single trapped layer next to the output recovers within the two steps (its write passes through "
        "at most one more layer), so the best single-layer arm of a trapped band can match a free one's"
    ),
}
_LAST_RETENTION = (
    "the trapped last layers write a small share of the final state: their adapters cost exact "
    "match but barely move the retention perplexity, so which arm forgets least is not set"
)
_BOTTLENECK = {
    "D:prompt_entropy": True,
    "D:dataset_entropy": True,
    "D:effective_rank": True,
    "D:rank_deficiency": True,
    "D:sparsity": True,
}
_SMOOTH = {"D:curvature": True}


def _reversed(expected: dict[str, bool]) -> dict[str, bool]:
    return {claim: not holds for claim, holds in expected.items()}


CONTROLS: dict[str, Control] = {
    control.name: control
    for control in (
        Control(
            "planted_late",
            _tail_profile,
            {"C1": True, "C2": True, "C7": True},
            "a perturbation growing with depth, almost all of it in the last 20% of layers",
        ),
        # Its residual writes are amplified fourfold at every layer: larger states have fewer entries below ε.
        Control(
            "planted_uniform",
            lambda depth: 3.0,
            {"C1": False, "C2": False, "C7": False, "D:sparsity": False},
            "the same perturbation at every layer",
        ),
        Control(
            "planted_early",
            lambda depth: _tail_profile(1.1 - depth),
            {"C1": False, "C2": False, "C7": False},
            "the mirror image of planted_late: largest at the first layer, shrinking with depth",
        ),
        # Layer-swap controls (C3), built on the fine-tuned tiny model, which is good at the scored task:
        # swapping a perturbed block into it harms most where the perturbation is; swapping a clean
        # block into the perturbed copy helps most there.
        Control(
            "planted_edges",
            lambda depth: 3.0 if depth <= 0.2 or depth > 0.8 else 0.02,
            {"C3:base_with_sft_block": True, "C3:sft_with_base_block": False},
            "a large perturbation in the first and last 20% of layers, a small one between",
            clean="sft",
        ),
        # planted_edges run backwards, so that the competent model is the host of sft_with_base_block: the
        # positive of that direction (and base_with_sft_block's second negative).
        Control(
            "planted_edges_reversed",
            lambda depth: 3.0 if depth <= 0.2 or depth > 0.8 else 0.02,
            {"C3:base_with_sft_block": False, "C3:sft_with_base_block": True},
            "planted_edges run backwards: the perturbed model is the base",
            clean="sft",
            reverse_of="planted_edges",
        ),
        # Into the middle-damaged copy (sft_with_base_block), clean middle blocks help most, but whether a clean
        # edge block lowers or raises that host (C3's host condition) is not set by the construction: no answer there.
        Control(
            "planted_middle",
            lambda depth: 3.0 if 0.2 < depth <= 0.8 else 0.02,
            {"C3:base_with_sft_block": False},
            "a large perturbation between 20% and 80% of depth, a small one in the first and last 20%",
            clean="sft",
        ),
        # Directional controls (§3.3-3.4). Nothing moved: no directional change, and no CKA drop (C1).
        Control(
            "planted_identical",
            _none,
            {"C1": False, **{claim: False for claim in HYPOTHESES}},
            "an exact copy of the base: no perturbation anywhere",
            unanswered=_NO_WEIGHT_CHANGE,
        ),
        # The representation changes from the first layer on, so CKA has no high plateau (C1); only embeddings
        # and residual-write gains change, none of eq. 1's weights (C2, C7 undefined).
        Control(
            "planted_bottleneck",
            _none,
            {"C1": False, **_BOTTLENECK},
            "the residual stream confined to one coordinate at every layer",
            construction="bottleneck",
            unanswered={**_NO_WEIGHT_CHANGE, **_directional(_BOTTLENECK)},
        ),
        Control(
            "planted_bottleneck_reversed",
            _none,
            {"C1": False, **_reversed(_BOTTLENECK)},
            "planted_bottleneck run backwards: the confined model is the base",
            construction="bottleneck",
            reverse_of="planted_bottleneck",
            unanswered={**_NO_WEIGHT_CHANGE, **_directional(_BOTTLENECK)},
        ),
        # The first layer's write changes every later state (no CKA plateau, C1), and the only weight of eq. 1 that
        # changes is its q_proj, so the weight change peaks at the first layer, not in the last 20% (C2).
        Control(
            "planted_smooth",
            _none,
            {"C1": False, "C2": False, **_SMOOTH},
            "the first layer attends uniformly to the prefix, its write amplified",
            construction="smooth",
            unanswered={"C7": _ONE_LAYER, **_directional(_SMOOTH)},
        ),
        # Every condition of C1 but the plateau holds: a noise ramp that falls with depth (0.45 at the first layer)
        # lowers CKA before the tail, while planted_late's tail dose (100) drops it in the tail. Its weight change
        # falls, then jumps in the tail, so C2 fails on its climb alone (rank correlation 0.6 after the midpoint,
        # by construction), and C7 holds. Measured on two builds: plateau CKA 0.952 [0.943, 0.962] and 0.944
        # [0.937, 0.953] (threshold 0.98), drop 0.42 and 0.47, mean-shift ratio 125 and 104 (threshold 12). A ramp
        # of 0.3 with a tail dose of 10 left the plateau at 0.979 [0.974, 0.982] and the drop at 0.028 on one.
        Control(
            "planted_low_plateau",
            lambda depth: 0.45 * (1.1 - depth) + 100.0 * _tail(depth),
            {"C1": False, "C2": False, "C7": True},
            "a noise ramp falling with depth, and a late perturbation",
            unanswered=_directional({}),
            isolates={"C1": ("cka_plateau_min",), "C2": ("climb_spearman",)},
        ),
        # C1's other two conditions, each failing alone, on hand-built networks (``quiet``): a translation
        # keeps the mean shift as large before the tail as in it, and a large vector common to both models'
        # last states keeps their cosine highest there.
        Control(
            "planted_offset",
            _none,
            {"C1": False},
            "a hand-built network whose SFT writes a constant vector at its first layer and a larger write at its last",
            construction="offset_then_late",
            base_construction="quiet",
            unanswered=_ONLY_C1,
            isolates={"C1": ("mean_shift_spike_ratio",)},
        ),
        Control(
            "planted_common_write",
            _none,
            {"C1": False},
            "a hand-built network whose last layer writes one large vector in both models; the SFT's "
            "embeddings moved a little and its last attention writing",
            construction="moved_under_common_write",
            base_construction="common_write",
            unanswered=_ONLY_C1,
            isolates={"C1": ("cosine_drop", "cosine_lowest_layer_depth")},
        ),
        # C5 (§4.3, Fig. 3): a trained two-layer reader among identity blocks (``harness.plants.emergence``). The base
        # has identity blocks only, so its logit lens reads nothing at any layer.
        Control(
            "planted_emergence",
            _none,
            {"C5": True},
            "a trained two-layer reader in the last two layers, identity blocks before it",
            construction="reader_late",
            base_construction="reader_nowhere",
            unanswered=_ONLY_C5,
        ),
        Control(
            "planted_emergence_early",
            _none,
            {"C5": False},
            "the same reader in the first two layers, identity blocks after it",
            construction="reader_early",
            base_construction="reader_nowhere",
            unanswered=_ONLY_C5,
        ),
        Control(
            "planted_emergence_never",
            _none,
            {"C5": False},
            "identity blocks only: the lens is dormant everywhere and never rises",
            construction="reader_nowhere",
            base_construction="reader_nowhere",
            unanswered=_ONLY_C5,
            isolates={"C5": ("tail_rise",)},
        ),
        # C6 (§4.2, Fig. 2): a model built by hand in three stages (see ``stages``), and its SFT the same model
        # with a little noise (relative 0.05) everywhere, so that the two track each other.
        Control(
            "planted_stages",
            lambda depth: 0.05,
            {"C6": True},
            "three stages built by hand: a first-layer transition, a quiet plateau, a rank-one last write; "
            "the SFT a slightly perturbed copy",
            construction="noise",
            base_construction="stages",
            unanswered=_OTHER_THAN_C6,
        ),
        Control(
            "planted_stages_no_transition",
            lambda depth: 0.05,
            {"C6": False},
            "planted_stages with a first layer as quiet as the plateau",
            base_construction="stages_no_transition",
            unanswered=_OTHER_THAN_C6,
            isolates={"C6": ("base_transition_ratio", "sft_transition_ratio")},
        ),
        Control(
            "planted_stages_no_collapse",
            lambda depth: 0.05,
            {"C6": False},
            "planted_stages whose last write is large but spread over every direction",
            base_construction="stages_no_collapse",
            unanswered=_OTHER_THAN_C6,
            isolates={"C6": ("base_rank_collapse_ratio", "sft_rank_collapse_ratio")},
        ),
        Control(
            "planted_stages_no_explosion",
            lambda depth: 0.05,
            {"C6": False},
            "planted_stages whose last layer cancels every coordinate but a steady one: the rank collapses, "
            "the spectral norm does not grow",
            base_construction="stages_no_explosion",
            unanswered=_OTHER_THAN_C6,
            isolates={"C6": ("base_norm_explode_ratio", "sft_norm_explode_ratio")},
        ),
        # Pearson r across layers is dominated by the bottleneck's outlier, so noise in the SFT's middle layers
        # (even at 3x their weights' RMS) leaves r at 1.0: the SFT that does not track has its bottleneck at the
        # middle layer instead, the rank collapsed from there on.
        Control(
            "planted_stages_diverging",
            _none,
            {"C6": False},
            "planted_stages whose SFT has its bottleneck at the middle layer, not the last",
            construction="stages_mid_bottleneck",
            base_construction="stages",
            unanswered=_OTHER_THAN_C6,
        ),
        # The LoRA study (C4, each C4:M<n>, the referee's control, C8; §4.4, App. A-B) on the fine-tuned tiny
        # model, some of whose layers are rescaled so that the function is unchanged but an adapter there throws
        # the model off (``trap``): which arms keep the fine-tuned skill is known. Its SFT is an untouched copy.
        Control(
            "planted_lora_mid_block",
            _none,
            {"C4": True, "C4:M5": True, "C4-control": True},
            "the first and last 20% of layers trapped: only adapters between them keep the skill",
            clean="sft",
            base_construction="trap_edges",
            unanswered={**_ONLY_LORA, "C8": _LAST_RETENTION, **_OTHER_SEGMENTS},
        ),
        Control(
            "planted_lora_edges",
            _none,
            {"C4": False, "C4:M5": False, "C4-control": False},
            "the layers between the first and last 20% trapped: only adapters at the edges keep the skill",
            clean="sft",
            base_construction="trap_middle",
            unanswered={**_ONLY_LORA, "C8": _THROWN_OFF_RETENTION, **_OTHER_SEGMENTS},
        ),
        # C8's positive: on the pretrained model, which knows its pretraining text, a trapped layer's adapter
        # is not thrown off but takes steps ten times as large: it forgets that text, by much the same amount
        # with every seed (two steps, measured on this machine's build: full LoRA's perplexity 253 over three
        # seeds, against the base's 230 and the mid-block's 233; closest margin 17.4 [10.7, 23.7]).
        Control(
            "planted_lora_retention",
            _none,
            {"C8": True},
            "the pretrained model with the first and last 20% of layers trapped ten-fold: adapters there take "
            "ten-times larger steps and forget its pretraining text",
            base_construction="trap_edges_tenfold",
            unanswered={
                **_ONLY_LORA,
                **{claim: _NO_SKILL for claim in ("C4", "C4:M3", "C4:M5", "C4:M10", "C4-control")},
            },
        ),
        # C8's negative, the mirror image of its positive: the middle layers trapped ten-fold, so that the middle
        # arms' adapters take the ten-times larger steps and forget the pretraining text, the edge arms' do not.
        Control(
            "planted_lora_middle_forgets",
            _none,
            {"C8": False},
            "the pretrained model with the layers between the first and last 20% trapped ten-fold: adapters there "
            "take ten-times larger steps and forget its pretraining text",
            base_construction="trap_middle_tenfold",
            unanswered={
                **_ONLY_LORA,
                **{claim: _NO_SKILL for claim in ("C4", "C4:M3", "C4:M5", "C4:M10", "C4-control")},
            },
        ),
        Control(
            "planted_smooth_reversed",
            _none,
            {"C1": False, "C2": False, **_reversed(_SMOOTH)},
            "planted_smooth run backwards: the smoothed model is the base",
            construction="smooth",
            reverse_of="planted_smooth",
            unanswered={"C7": _ONE_LAYER, **_directional(_SMOOTH)},
        ),
    )
}


# --- dose-response ladders -------------------------------------------------------------------------
#
# The same late construction at planted doses that bracket each threshold: a gentle ramp of noise over
# every layer (relative RMS 0.08 at the first layer, 0.10 at the last, which keeps CKA above 0.98) plus
# ``dose`` x ((l/L - 0.8)/0.2)^2 in the last 20% of layers. Measured on tiny_olmo2's base (300 pooled
# samples, 200 resamples, 95% intervals), the CKA drop of C1 is 0.006, 0.006, 0.007, 0.032 [0.026, 0.038]
# and 0.116 at the doses 0 to 10 on one build (threshold 0.04, the paper's 0.98 to 0.94), but 0.024 [0.018,
# 0.032] at 10 on another, whose last layers write less into the stream: the rung where C1 must hold is
# 100 (planted_late's tail dose; drop 0.46 and 0.54 on those two builds). C2's early-to-peak ratio falls
# from 0.84 through 0.65 and 0.21 to 0.03 and 0.008 (threshold 0.5); C7's r(weight change, cosine) goes
# from -0.53 and -0.47 to -0.99 and below (threshold -0.79). A claim must be refuted at every rung up to
# ``refuted_to`` and hold from ``holds_from`` on; the rungs between lie near its threshold, where either
# verdict, or inconclusive, is right.


@dataclass(frozen=True)
class Ladder:
    name: str
    background: Callable[[float], float]  # relative depth -> the noise scale every rung shares
    doses: tuple[float, ...]
    # claim -> (refuted up to this dose, or None where no rung is planted to refute it; holds from this dose on)
    answers: dict[str, tuple[float | None, float]]
    description: str
    # None: the dose is late noise, dose x ((l/L - 0.8)/0.2)^2 on the background; else the base construction
    # that reads the dose (``Control.dose``), every rung's SFT being its base with the background's noise
    base_construction: str | None = None
    unanswered: dict[str, str] = field(default_factory=dict)  # the claims no rung answers, and why
    # the claims whose refuted end is None: why their rungs below ``holds_from`` may go either way
    either_way: dict[str, str] = field(default_factory=dict)


PLATEAU_GAIN = 0.02  # the plateau layers' writes, against the embeddings' RMS of 1
TRANSITION_GAIN = 0.3  # the first layer's write: 15 plateau writes, small enough to keep the embeddings' spread
LAST_GAIN = 50.0  # the last layer's write
# Measured (300 pooled samples): rank collapse ratios 0.99, 0.44, 0.18 and 0.17 (at most 0.2 to hold) and
# spectral norm ratios 1.0, 1.7, 13 and 44 (at least 2) at these gains; at 3 the collapse interval's upper
# end is 0.188, near its threshold, so C6 need not hold there.
LAST_WRITE_DOSES = (PLATEAU_GAIN, 0.3, 3.0, 10.0)
LAST_WRITE_ANSWER = (0.3, 10.0)  # refuted up to a last write of 0.3, holds from 10 on


def _ramp(depth: float) -> float:
    return 0.1 * (0.8 + 0.2 * depth)


# Measured: at doses 0 and 0.03, r(weight change, cosine) was -0.53 and -0.47 on one build of the tiny pair
# and -0.83 [-0.86, -0.79] at 0.03 on another (an AVX-512/AMX machine), against C7's -0.79.
_RAMP_CORRELATES = (
    "the background ramp alone makes weight change grow and cosine fall with depth, so below the "
    "late dose their correlation is set by the build's last bits, not by the construction"
)


LADDERS: dict[str, Ladder] = {
    ladder.name: ladder
    for ladder in (
        Ladder(
            "late_dose",
            _ramp,
            (0.0, 0.03, 0.3, 3.0, 10.0, 100.0),
            {"C1": (1.0, 100.0), "C2": (0.03, 0.3), "C7": (None, 0.3)},
            "a gentle ramp of noise at every layer plus a late perturbation of growing dose",
            either_way={"C7": _RAMP_CORRELATES},
        ),
        # C6: ``planted_stages`` with the last layer's rank-one write at a growing gain (the dose), from the
        # plateau's own gain (no bottleneck) to a fifth of planted_stages' 50. The SFT is each base with 5% noise.
        Ladder(
            "last_write",
            lambda depth: 0.05,
            LAST_WRITE_DOSES,
            {"C6": LAST_WRITE_ANSWER},
            "the hand-built three stages with a last write of growing gain",
            base_construction="stages_dosed",
            unanswered=_OTHER_THAN_C6,
        ),
    )
}


def rung_name(ladder: Ladder, dose: float) -> str:
    return f"{ladder.name}_{format(dose, 'g').replace('.', 'p')}"


def _rung(ladder: Ladder, dose: float) -> Control:
    expected, unanswered = {}, {}
    for claim, (refuted_to, holds_from) in ladder.answers.items():
        if dose >= holds_from:
            expected[claim] = True
        elif refuted_to is None:
            unanswered[claim] = f"dose {dose:g} is below the dose where {claim} must hold: {ladder.either_way[claim]}"
        elif dose <= refuted_to:
            expected[claim] = False
        else:
            unanswered[claim] = (
                f"dose {dose:g} lies between the rungs where {claim} must be refuted (up to "
                f"{refuted_to:g}) and hold (from {holds_from:g}): near its threshold"
            )
    background = ladder.background
    profile = background if ladder.base_construction else lambda depth: background(depth) + dose * _tail(depth)
    return Control(
        rung_name(ladder, dose),
        profile,
        expected,
        f"{ladder.description}: dose {dose:g}",
        unanswered={**ladder.unanswered, **unanswered},
        ladder=ladder.name,
        dose=dose,
        base_construction=ladder.base_construction,
    )


def ladder_rungs(name: str) -> list[Control]:
    """The controls of ladder ``name``, by increasing dose."""
    return [CONTROLS[rung_name(LADDERS[name], dose)] for dose in LADDERS[name].doses]


CONTROLS.update(
    {control.name: control for ladder in LADDERS.values() for control in (_rung(ladder, dose) for dose in ladder.doses)}
)


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

    Layer l gets Gaussian noise on all its projections, of RMS ``scale`` times that projection's RMS over
    all layers (one reference per projection: the weight change of eq. 1 then follows the profile, not the
    layers' own weight norms, which differ from one build of the tiny pair to the next), and its writes into
    the residual stream are amplified by (1 + ``scale``): a change that moves the representation as surely
    as it moves the weights.
    """
    layers = decoder_layers(model)
    count = len(layers)
    with torch.no_grad():
        reference = {
            name: torch.stack([module.weight.pow(2).mean() for module in modules]).mean().sqrt()
            for name, modules in _modules_by_name(layers).items()
        }
        for index, layer in enumerate(layers, start=1):
            scale = control.profile(index / count)
            for module_index, (name, module) in enumerate(_planted_modules(layer)):
                weight = module.weight
                generator = torch.Generator().manual_seed(seed * 100_003 + index * 101 + module_index)
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.add_(noise * scale * reference[name])
            for gain in _residual_write_gains(layer):
                gain.mul_(1 + scale)


def _modules_by_name(layers) -> dict[str, list]:
    """Each planted projection's modules, one per layer."""
    grouped: dict[str, list] = {}
    for layer in layers:
        for name, module in _planted_modules(layer):
            grouped.setdefault(name, []).append(module)
    return grouped


def confine(model, control: Control | None = None, seed: int = 0) -> None:
    """Confine the residual stream of ``model`` to one coordinate at every layer (``planted_bottleneck``).

    The embeddings keep one coordinate (the one with the most energy) and every
    residual write (``_residual_write_gains``) is masked to it, so every state at
    every layer, token-level or mean-pooled, is a multiple of one basis vector.
    A rank-one matrix has matrix entropy 0 (eqs. 2-3) and effective rank 1
    (eq. 4), the least these metrics can be, rank deficiency min(N, D) − 1, the
    most a non-zero matrix can have, and at least (D − 1)/D of its entries are
    exactly zero (sparsity). Against any base whose representations span more
    than one direction, SFT − base is therefore negative for both entropies and
    effective rank and positive for rank deficiency and sparsity, at every layer.
    Curvature is not determined: a one-dimensional path turns back (angle π) or
    goes on (angle 0) by the token sequence alone.
    """
    embedding = model.get_input_embeddings().weight
    keep = int(embedding.pow(2).mean(dim=0).argmax())
    mask = torch.zeros(embedding.shape[1], dtype=embedding.dtype)
    mask[keep] = 1.0
    with torch.no_grad():
        embedding.mul_(mask)
        for layer in decoder_layers(model):
            for write in _residual_write_gains(layer):  # the hidden dimension is the first axis of each
                write.mul_(mask.view(-1, *([1] * (write.ndim - 1))))


SMOOTH_GAIN = 1.0e4  # the first layer's write, against the O(1) writes of the others: see ``smooth``


def smooth(model, control: Control | None = None, seed: int = 0) -> None:
    """Make every state of ``model`` a smoothed path over the tokens (``planted_smooth``).

    The first decoder layer's queries are zeroed, so its attention logits are all
    equal and each token attends uniformly to itself and every earlier token: the
    attention output is the running mean m_t of the prefix's values. Its residual
    write is amplified by ``SMOOTH_GAIN``, so it dominates that state and, since
    every later write is bounded by its output norm's gain, every later one.
    Curvature (eq. 5) is the mean angle between consecutive steps. The steps of a
    running mean, m_{t+1} − m_t = (v_{t+1} − m_t)/(t + 2), are uncorrelated for
    values that vary independently from token to token (their covariance is
    −σ²/(t + 2) + σ²/(t + 2) = 0), so they meet at about 90° (curvature ≈ 1/2);
    a path of states that follow the current token (the base: h_t ≈ f(x_t)) has
    consecutive steps sharing h_{t+1} with opposite signs (correlation −1/2,
    about 120°, curvature ≈ 2/3). The SFT's curvature is therefore lower at every
    layer. Entropy, rank and sparsity are not determined by it.
    """
    first = decoder_layers(model)[0]
    with torch.no_grad():
        first.self_attn.q_proj.weight.zero_()
        _residual_write_gains(first)[0].mul_(SMOOTH_GAIN)  # the attention write (OLMo-2: its output norm's gain)


def stages(
    model,
    control: Control | None = None,
    seed: int = 0,
    transition: bool = True,
    collapse: bool = True,
    bottleneck_layer: int = -1,
    last_gain: float = LAST_GAIN,
) -> None:
    """Overwrite ``model`` (OLMo-2) with a hand-built network in the three stages of C6 (§4.2, Fig. 2).

    Embeddings are standard normal. No layer attends (its attention write's gain is 0); each writes a random
    MLP's output through its post-feedforward norm, so the write's RMS is that norm's gain: 0.3 at the first
    layer (the transition: 15 times a plateau write), 0.02 on the plateau. The last layer's MLP has equal
    gate and up projections and a non-negative down projection into one coordinate, so its output there,
    Σ w·silu(z)·z, is never negative, and the normalised write is +50·√D on that coordinate for every
    token: every pooled state gets the same large vector, its effective rank falls towards 1 (from about
    5.8 on the plateau) and its spectral norm grows about fiftyfold. ``transition=False`` makes the first
    layer as quiet as the plateau; ``collapse=False`` makes the last write as large but random in every
    direction (the spectral norm grows, the rank does not fall); ``bottleneck_layer`` moves that last write
    to another layer (the last one then writes like the plateau).
    """
    generator = torch.Generator().manual_seed(seed + 7919)

    def normal(tensor: torch.Tensor, std: float) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std)

    layers = decoder_layers(model)
    with torch.no_grad():
        normal(model.get_input_embeddings().weight, 1.0)
        for index, layer in enumerate(layers):
            layer.post_attention_layernorm.weight.zero_()
            mlp = layer.mlp
            for module in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                normal(module.weight, module.weight.shape[1] ** -0.5)
            gain = TRANSITION_GAIN if index == 0 and transition else PLATEAU_GAIN
            if index == bottleneck_layer % len(layers):
                gain = last_gain
                if collapse:
                    _write_a_constant(mlp)
            layer.post_feedforward_layernorm.weight.fill_(gain)


STEADY_COORDINATE = 1.0  # planted_stages_no_explosion: coordinate 0 of every state, which no layer writes


def task_token_frequencies(vocabulary: int, texts: int = 2000) -> torch.Tensor:
    """How often each token of the tiny pair's tokenizer occurs in generated GSM8K-format training text
    (the format of the default probe set), as shares that sum to 1."""
    from transformers import AutoTokenizer

    from harness.sources import synthetic

    tokenizer = AutoTokenizer.from_pretrained(zoo.build_pair(SOURCE_PAIR, progress=False).base_dir)
    counts = torch.zeros(vocabulary)
    for index in range(texts):
        record = synthetic.gsm8k_record(0, "train", index)
        ids = tokenizer(f"Question: {record['question']}\nAnswer: {record['answer']}")["input_ids"]
        counts += torch.bincount(torch.tensor(ids), minlength=vocabulary).float()
    return counts / counts.sum()


def stages_without_explosion(
    model, control: Control | None = None, seed: int = 0, frequencies: torch.Tensor | None = None
) -> None:
    """``stages`` whose last layer collapses the rank without raising the spectral norm (C6's explode
    condition alone fails; ``planted_stages_no_explosion``).

    Coordinate 0 of every embedding is ``STEADY_COORDINATE`` and no layer writes it (every output norm's
    gain is 0 there). The other coordinates of the embeddings are centred on the token ``frequencies``
    (default: ``task_token_frequencies``) and each row rescaled to RMS 1: a mean-pooled state is then not
    dominated by the tokens every text shares, and the plateau's effective rank is several times the
    collapse threshold's floor (the rank of a last state can fall to 1, no lower). The last layer's MLP
    computes −h on every coordinate but 0 exactly: unit pairs with gates ±h_i and ups ±h_0 / h_0 = ±1 give
    silu(h_i) − silu(−h_i) = h_i. Its output norm's gain is the typical RMS of those coordinates, so the
    write cancels them up to the few per cent by which their norm varies from token to token, and the
    last state is nearly one vector, ``STEADY_COORDINATE`` on coordinate 0, for every token: its
    effective rank falls towards 1 while its largest singular value, never below that coordinate's
    column, stays at the plateau's.
    """
    layers = decoder_layers(model)
    dimension, hidden = model.config.hidden_size, model.config.intermediate_size
    if hidden < 2 * (dimension - 1):
        raise ValueError(f"the cancelling MLP needs {2 * (dimension - 1)} hidden units; the model has {hidden}")
    stages(model, control, seed, collapse=False, last_gain=PLATEAU_GAIN)
    embeddings = model.get_input_embeddings().weight
    if frequencies is None:
        frequencies = task_token_frequencies(len(embeddings))
    with torch.no_grad():
        rest = embeddings[:, 1:]
        for _ in range(3):  # centring and rescaling each row in turn: after three rounds both hold closely
            rest.sub_(frequencies.to(rest.dtype) @ rest)
            rest.mul_(rest.pow(2).mean(dim=1, keepdim=True).rsqrt())
        embeddings[:, 0] = STEADY_COORDINATE
        for layer in layers:
            layer.post_feedforward_layernorm.weight[0] = 0.0
        mlp = layers[-1].mlp
        for module in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            module.weight.zero_()
        for coordinate in range(1, dimension):
            for sign, unit in ((1.0, 2 * coordinate - 2), (-1.0, 2 * coordinate - 1)):
                mlp.gate_proj.weight[unit, coordinate] = sign
                mlp.up_proj.weight[unit, 0] = sign / STEADY_COORDINATE
                mlp.down_proj.weight[coordinate, unit] = -1.0
        # the RMS of the residual's coordinates but 0: embeddings of RMS 1, the transition's and plateau's writes
        typical = (1.0 + TRANSITION_GAIN**2 + (len(layers) - 2) * PLATEAU_GAIN**2) ** 0.5
        final = layers[-1].post_feedforward_layernorm.weight
        final.fill_(typical * ((dimension - 1) / dimension) ** 0.5)  # the norm divides by the RMS over all D
        final[0] = 0.0


def _write_a_constant(mlp) -> None:
    """Make ``mlp``'s output the same direction for every token: equal gate and up projections and a
    non-negative down projection into coordinate 0, so its output there, Σ w·silu(z)·z, is never negative and
    the post-feedforward norm turns it into the same vector (that norm's gain times √D on coordinate 0)."""
    mlp.up_proj.weight.copy_(mlp.gate_proj.weight)
    down = mlp.down_proj.weight
    keep = down[0].abs().clone()
    down.zero_()
    down[0] = keep


# C1's isolating negatives, built on ``stages``' hand-made network with every layer as quiet as its plateau.
OFFSET_GAIN = 0.5  # planted_offset: the constant vector the SFT's first layer writes, against embeddings of RMS 1
LATE_WRITE_GAIN = 1.0  # the write the SFT's last layer adds in both: a tail CKA drop
COMMON_GAIN = 100.0  # planted_common_write: the constant vector both models' last layer writes
EMBEDDING_NOISE = 0.08  # planted_common_write: the SFT's embeddings moved by this relative RMS


def quiet(model, control: Control | None = None, seed: int = 0) -> None:
    """``stages`` with every layer writing like the plateau: no transition, no bottleneck."""
    stages(model, control, seed, transition=False, collapse=False, last_gain=PLATEAU_GAIN)


def offset_then_late(model, control: Control | None = None, seed: int = 0) -> None:
    """The SFT of ``planted_offset``, made from ``quiet``: the first layer writes a constant vector instead
    (every later state moves by the same vector, so the mean shift is as large before the tail as in it,
    while centred CKA does not see a translation), and the last layer's write grows to ``LATE_WRITE_GAIN``
    (CKA and cosine drop in the tail)."""
    layers = decoder_layers(model)
    with torch.no_grad():
        _write_a_constant(layers[0].mlp)
        layers[0].post_feedforward_layernorm.weight.fill_(OFFSET_GAIN)
        layers[-1].post_feedforward_layernorm.weight.fill_(LATE_WRITE_GAIN)


def common_write(model, control: Control | None = None, seed: int = 0) -> None:
    """The base of ``planted_common_write``: ``quiet``, except that the last layer writes the same large
    vector (``COMMON_GAIN``) for every token."""
    stages(model, control, seed, transition=False, last_gain=COMMON_GAIN)


def moved_under_common_write(model, control: Control | None = None, seed: int = 0) -> None:
    """The SFT of ``planted_common_write``: its embeddings moved by ``EMBEDDING_NOISE`` (every state before
    the tail a little less aligned with the base's), and its last layer's attention, silent in the base,
    writing at ``LATE_WRITE_GAIN`` (a tail CKA drop and a mean-shift spike). The large vector both write at
    the last layer dominates that state, so its cosine with the base's is higher there than anywhere before:
    the cosine does not drop in the tail, and no other condition of C1 fails."""
    generator = torch.Generator().manual_seed(seed + 104_729)
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        noise = torch.randn(embeddings.shape, generator=generator, dtype=embeddings.dtype)
        embeddings.add_(noise * EMBEDDING_NOISE * embeddings.pow(2).mean().sqrt())
        decoder_layers(model)[-1].post_attention_layernorm.weight.fill_(LATE_WRITE_GAIN)


TRAP_GAIN = 1000.0  # how much larger the trapped layers' value and up projections are made (and the rest smaller)
RETENTION_TRAP_GAIN = 10.0  # planted_lora_retention's: large enough to forget, too small to throw the model off


def trap(model, layers: list[int], gain: float = TRAP_GAIN) -> None:
    """Rescale ``layers`` of ``model`` so that the function is unchanged but LoRA there throws it off (C4, C8).

    The value and up projections are multiplied by ``gain`` and the output and down projections divided by
    it: the value path is linear and the MLP is ``down(act(gate(x)) * up(x))``, so every output is the same
    (up to rounding). An adapter on the output or down projection reads a ``gain``-times larger input than
    the frozen weight it is added to, so from its first step the layer writes the adapter's direction,
    not its own, and the frozen layers after it read that. Which layers must not be adapted is known by
    construction. A layer near the output has few layers after it: its adapters recover within a few
    steps, which is why the planted studies train for two.
    """
    with torch.no_grad():
        for index in layers:
            layer = decoder_layers(model)[index]
            layer.self_attn.v_proj.weight.mul_(gain)
            layer.self_attn.o_proj.weight.div_(gain)
            layer.mlp.up_proj.weight.mul_(gain)
            layer.mlp.down_proj.weight.div_(gain)


def trap_band(band: str, gain: float = TRAP_GAIN) -> Callable:
    """A construction that traps the first and last 20% of layers (``"edges"``) or the layers between them
    (``"middle"``, the paper's mid-block), by ``depth.layer_groups``."""

    def construct(model, control: Control | None = None, seed: int = 0) -> None:
        groups = depth.layer_groups(len(decoder_layers(model)))
        trap(model, groups["first"] + groups["last"] if band == "edges" else groups["middle"], gain)

    return construct


def reader_at(where: str | None) -> Callable:
    """A construction that makes a model the trained two-layer reader of ``harness.plants.emergence`` placed at the
    last two layers (``"late"``), the first two (``"early"``), or nowhere (``None``: identity blocks only)."""

    def construct(model, control: Control | None = None, seed: int = 0) -> None:
        source = zoo.build_pair(SOURCE_PAIR, progress=False)
        reader = emergence.trained_reader(source.base_dir, source.info["key"], seed=seed)
        first = {"late": len(decoder_layers(model)) - emergence.READER_LAYERS, "early": 0, None: None}[where]
        emergence.place(model, reader, first)

    return construct


CONSTRUCTIONS: dict[str, Callable] = {
    "noise": plant,
    "bottleneck": confine,
    "smooth": smooth,
    "stages": stages,
    "stages_no_transition": lambda model, control=None, seed=0: stages(model, control, seed, transition=False),
    "stages_no_collapse": lambda model, control=None, seed=0: stages(model, control, seed, collapse=False),
    "stages_dosed": lambda model, control=None, seed=0: stages(model, control, seed, last_gain=control.dose),
    "stages_no_explosion": stages_without_explosion,
    "stages_mid_bottleneck": lambda model, control=None, seed=0: stages(
        model, control, seed, bottleneck_layer=len(decoder_layers(model)) // 2
    ),
    "reader_nowhere": reader_at(None),
    "reader_late": reader_at("late"),
    "reader_early": reader_at("early"),
    "quiet": quiet,
    "offset_then_late": offset_then_late,
    "common_write": common_write,
    "moved_under_common_write": moved_under_common_write,
    "trap_edges": trap_band("edges"),
    "trap_middle": trap_band("middle"),
    "trap_edges_tenfold": trap_band("edges", RETENTION_TRAP_GAIN),
    "trap_middle_tenfold": trap_band("middle", RETENTION_TRAP_GAIN),
}
TRAP_GAINS = {
    "trap_edges": TRAP_GAIN,
    "trap_middle": TRAP_GAIN,
    "trap_edges_tenfold": RETENTION_TRAP_GAIN,
    "trap_middle_tenfold": RETENTION_TRAP_GAIN,
}


def build_control(name: str, progress: bool = True) -> zoo.BuiltPair:
    """The planted pair ``name``, built from the tiny base on first use and cached.

    A reversed control (``reverse_of``) is its forward pair with base and SFT
    swapped: it reuses that pair's models, and so its profiles.
    """
    control = CONTROLS[name]
    if control.reverse_of is not None:
        forward = build_control(control.reverse_of, progress=progress)
        info = {
            **forward.info,
            "name": name,
            "reverse_of": control.reverse_of,
            "description": control.description,
            "expected": control.expected,
        }
        return zoo.BuiltPair(name=name, base_dir=forward.sft_dir, sft_dir=forward.base_dir, info=info)
    source = zoo.build_pair(SOURCE_PAIR, progress=progress)
    recipe = {
        "source": source.info["key"],
        "control": name,
        "format": CONTROLS_FORMAT,
        "clean": control.clean,
        "scales": [control.profile(i / 10) for i in range(1, 11)],
    }
    if control.construction != "noise":  # the noise controls keep the keys they were cached under
        recipe["construction"] = control.construction
    if control.base_construction is not None:
        recipe["base_construction"] = control.base_construction
    if any(c and c.startswith("reader") for c in (control.construction, control.base_construction)):
        recipe["reader"] = emergence.recipe()
    for construction in (control.construction, control.base_construction):
        if construction in TRAP_GAINS:
            recipe["trap_gain"] = TRAP_GAINS[construction]
    if {control.construction, control.base_construction} & {"quiet", "common_write"}:
        recipe["hand_built"] = {
            "plateau": PLATEAU_GAIN,
            "offset": OFFSET_GAIN,
            "late": LATE_WRITE_GAIN,
            "common": COMMON_GAIN,
            "embedding_noise": EMBEDDING_NOISE,
        }
    if any(c and c.startswith("stages") for c in (control.construction, control.base_construction)):
        recipe["stages"] = {"plateau": PLATEAU_GAIN, "transition": TRANSITION_GAIN, "last": LAST_GAIN}
        if control.base_construction == "stages_dosed":
            recipe["stages"]["last"] = control.dose
        if control.base_construction == "stages_no_explosion":
            recipe["stages"]["steady"] = STEADY_COORDINATE
            recipe["stages"]["centred_on"] = "gsm8k-format train text, 2000 records"
    key = cache.stable_hash(recipe)
    clean_dir = source.base_dir if control.clean == "base" else source.sft_dir
    directory = cache.cache_root() / "zoo" / f"{name}-{key}"
    cache.build_once(directory, lambda scratch: _build_into(scratch, control, clean_dir, source))
    info = json.loads((directory / "build.json").read_text())
    return zoo.BuiltPair(name=name, base_dir=directory / "base", sft_dir=directory / "sft", info=info)


def _build_into(scratch, control: Control, clean_dir, source: zoo.BuiltPair) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(clean_dir, dtype=torch.float32)
    if control.base_construction is None:
        shutil.copytree(clean_dir, scratch / "base")
    else:  # the base is made too, and the SFT from it
        CONSTRUCTIONS[control.base_construction](model, control)
        model.save_pretrained(scratch / "base")
        AutoTokenizer.from_pretrained(clean_dir).save_pretrained(scratch / "base")
    CONSTRUCTIONS[control.construction](model, control)
    model.save_pretrained(scratch / "sft")
    AutoTokenizer.from_pretrained(clean_dir).save_pretrained(scratch / "sft")
    cache.write_json_atomic(
        scratch / "build.json",
        {
            "name": control.name,
            "source": source.info["key"],
            "description": control.description,
            "expected": control.expected,
        },
    )


class PlantedPairs:
    """The planted controls as a source of pairs for the registry (``models.add_pair_source``): each is
    named ``harness-control:NAME`` and built from the tiny OLMo-2 pair on first use."""

    def spec(self, name: str) -> models.ModelSpec | None:
        if name not in CONTROLS:
            return None
        ref = models.ModelRef(f"harness-control:{name}")
        return models.ModelSpec(
            name,
            ref,
            ref,
            "olmo2",
            dtype="float32",
            builder=name,
            notes="a planted control built from the tiny OLMo-2 pair",
        )

    def build(self, name: str, progress: bool = True) -> zoo.BuiltPair:
        return build_control(name, progress=progress)


PLANTED_PAIRS = PlantedPairs()


def register() -> None:
    """Let the registry name and build the planted controls (the pytest plugin and the command line do)."""
    models.add_pair_source(PLANTED_PAIRS)
