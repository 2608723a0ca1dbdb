"""The catalogue of planted pairs whose answer is known: the controls every claim predicate is tested on.

What each control plants and which answers it must give; how it is made is in
``harness.plants.constructions``, how it is built and cached in ``harness.plants.build``.

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

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.plants.constructions import PLATEAU_GAIN
from harness.verdicts.directional import HYPOTHESES

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
            isolates={"C1": ("cosine_drop", "cosine_tail_below_plateau")},
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
        # is not thrown off but takes steps ten times as large: it forgets that text (two steps; on one build
        # full LoRA's perplexity was 253 over three seeds, against the base's 230 and the mid-block's 233).
        # The last segment's arm is usually the compared arm that forgets least, by an amount that can vary
        # from seed to seed (25, 51 and 53 on one build), so its study runs five seeds (harness/claims.yaml).
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
