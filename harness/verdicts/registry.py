"""Every claim in one place: its conditions, each condition's threshold key and comparison, how its interval
is resampled, which depth groups it reads, and the calibration designs that put it at its threshold.

The predicates (``claims``, ``directional``) build their conditions from these entries, the calibration
(``harness.calibration``) runs the designs named here, and the reports carry the provenance the thresholds'
keys point to (``claims.yaml``'s ``provenance`` table). A test checks that every condition a predicate emits is
declared here, has a provenance entry and has a boundary design the calibration runs.

Condition names may hold one placeholder in braces (``{model}_transition_ratio``): one declared entry stands
for the condition on every model, band, text set or metric.

Designs (``Condition.boundary``, ``Claim.null``) are ``family:scenario`` names of ``harness.calibration``, or:

- ``exact``: the statistic has no sampling variance (a function of the two checkpoints' weights); it decides
  on its value, so at its threshold it holds exactly when the value clears it, by definition;
- ``implied: <how>``: whenever the claim's other conditions hold, this one holds too (the reason says why,
  and ``implication_holds`` checks it against the configured thresholds), so no design can put it at its
  threshold while the others are met, and a verdict can never hold on it alone;
- ``open: <why>``: no simulation yet sets this statistic exactly at its threshold; the reason says what is
  missing (``open_designs`` lists them; none is open today, and a test keeps it so), and the calibration's
  tables do not pretend to cover them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

EXACT = "exact"
OPEN = "open: "
IMPLIED = "implied: "

JACKKNIFE = "delete-a-group jackknife over the probe samples (50 groups; ratios on the log scale)"
EXACT_WEIGHTS = "none: the weight change is a function of the two checkpoints (exact)"
EXACT_COUNT_RESAMPLING = "none: rank deficiency is an integer count, decided on its value (exact)"
ITEMS = "Bayesian bootstrap over the scored items, paired across hybrids and host"
ITEMS_AND_SEEDS = "bootstrap over the scored items (paired across arms), the texts and the seeds, widened for few seeds"


@functools.cache
def _pattern(name: str) -> re.Pattern:
    """A declared name's pattern: each ``{placeholder}`` stands for any label (a model, band, text set, metric)."""
    return re.compile(re.sub(r"\\\{\w+\\\}", r"[A-Za-z0-9_.-]+", re.escape(name)))


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of a claim.

    ``threshold`` is the key of its threshold in the claims config (``C1.cka_drop_min``) and of its provenance
    entry; ``paper_effect`` is the paper's own value of the statistic where the paper reports one (text, with
    its figure), for the provenance line "paper's effect X; threshold Y; power Z".
    """

    name: str
    threshold: str
    comparison: str
    boundary: str
    paper_effect: str = ""
    scale: str = ""  # the scale of its jackknife interval: "log" for ratios, "proportion" for a small proportion
    decides: bool = True
    # measured power: (scenario, share of the calibration's simulations at the paper's effect in which this
    # condition holds), at POWER_SIZES; tests/test_calibration.py checks it against a fresh measurement
    power: tuple[tuple[str, float], ...] = ()
    # where that power is under 80%: (scenario, the calibration's sizes that reach it as (field of
    # calibration.Sizes, value) pairs, the power there), measured the same way, with 200 simulations
    powered_at: tuple[tuple[str, tuple[tuple[str, int], ...], float], ...] = ()

    def provenance(self, reason: str, threshold: float) -> str:
        """The provenance line of this condition's threshold: why (``reason``, the config's ``provenance``
        entry), the paper's effect, the threshold and the power at the paper's effect."""
        power = (
            ", ".join(
                f"{share:.0%}" + (f" ({scenario})" if scenario != "paper" else "") for scenario, share in self.power
            )
            if self.power
            else "not measured"
        )
        effect = self.paper_effect or "not given"
        needs = "".join(
            f"; {share:.0%} with "
            + " and ".join(f"{value:,} {SIZE_NAMES[size]}" for size, value in sizes)
            + ("" if scenario == "paper" else f" ({scenario})")
            for scenario, sizes, share in self.powered_at
        )
        return f"{reason}; paper's effect {effect}; threshold {threshold:g}; power {power}{needs}"

    def matches(self, name: str) -> bool:
        return _pattern(self.name).fullmatch(name) is not None

    @property
    def is_open(self) -> bool:
        return self.boundary.startswith(OPEN)

    @property
    def is_simulated(self) -> bool:
        return not self.boundary.startswith((OPEN, IMPLIED)) and self.boundary != EXACT


@dataclass(frozen=True)
class Claim:
    key: str  # the verdict's key; "C4:M{count}" stands for every M
    title: str
    paper: str  # section and figure
    family: str  # calibration family: layers, swap, lora, directional
    resampling: str
    depth_groups: str
    conditions: tuple[ConditionSpec, ...]
    null: str  # the design with no effect anywhere
    power: str = ""  # the design at the paper's effects ("" where the paper gives directions only)
    notes: tuple[str, ...] = field(default=())

    def condition(self, name: str) -> ConditionSpec:
        for spec in self.conditions:
            if spec.matches(name):
                return spec
        raise KeyError(f"{self.key} declares no condition {name!r}; it declares {[c.name for c in self.conditions]}")


POWER_SIMULATIONS = 200  # simulations behind each declared power
SIZE_NAMES = {
    "swap_items": "swap items (C3.items)",
    "seeds": "seeds per LoRA arm (tuning.seeds)",
    "texts": "retention texts per set (tuning.retention_samples)",
}
QUIET, NOISY = "paper, seed sd 0.01", "paper, seed sd 0.05"  # the LoRA scenarios: between-seed sd of an arm's score
POWER_SIZES = (
    "at the paper's effects (calibration's paper scenario): 10 decoder layers, 1,000 pooled and 100 token-level "
    "samples, 100 swap items, 1,319 task items per LoRA arm, 3 seeds; 200 simulations"
)

PLATEAU_TAIL = "plateau: rows before the last 20% of decoder layers; tail: rows in it (depth.is_tail_row)"
SEGMENTS = "M equal segments of the decoder layers; first/last: segments whose centre lies in the first/last 20%"

_CLAIMS = (
    Claim(
        "C1",
        "CKA plateau then drop",
        "§4.2, Fig. 1; eqs. 6-7",
        "layers",
        JACKKNIFE,
        PLATEAU_TAIL,
        (
            ConditionSpec(
                "cka_plateau_min",
                "C1.cka_plateau_min",
                ">=",
                "layers:boundary:cka_plateau_min",
                "> 0.98 (OLMo2-32B)",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "cka_drop",
                "C1.cka_drop_min",
                ">=",
                "layers:boundary:cka_drop",
                "~0.05 (0.99 to 0.94)",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "cka_lowest_layer_depth",
                "depth.tail",
                ">=",
                IMPLIED + "every plateau row at least C1.cka_plateau_min and the last row at least C1.cka_drop_min "
                "below the plateau mean put the lowest row in the tail whenever cka_plateau_min > 1 - cka_drop_min",
                "the last layer",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "cosine_drop",
                "C1.cosine_drop_min",
                ">",
                "layers:boundary:cosine_drop",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "cosine_tail_below_plateau",
                "C1.cosine_tail_below_min",
                ">",
                "layers:boundary:cosine_tail_below_plateau",
                "the last layer lowest",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "mean_shift_spike_ratio",
                "C1.mean_shift_spike_ratio",
                ">=",
                "layers:boundary:mean_shift_spike_ratio",
                "> 12 (< 1.0 on the plateau, > 12 at the end)",
                scale="log",
                power=(("paper", 1.0),),
            ),
        ),
        "layers:null",
        "layers:paper",
    ),
    Claim(
        "C2",
        "J-shaped weight change",
        "eq. 1, §4.3, Fig. 4",
        "layers",
        EXACT_WEIGHTS,
        "first 20% of decoder layers; after the midpoint; tail",
        (
            ConditionSpec(
                "early_to_peak",
                "C2.early_to_peak_max",
                "<=",
                EXACT,
                "~0.5 (0.05 early, > 0.10 at the peak)",
                scale="log",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "climb_spearman", "C2.climb_spearman_min", ">=", EXACT, "monotone (1.0)", power=(("paper", 1.0),)
            ),
            ConditionSpec("peak_layer_depth", "depth.tail", ">=", EXACT, "the last layer", power=(("paper", 1.0),)),
        ),
        "layers:null",
        "layers:paper",
    ),
    Claim(
        "C3",
        "inverted-U layer swap",
        "§4.3, Fig. 6",
        "swap",
        ITEMS,
        SEGMENTS,
        (
            ConditionSpec(
                "middle_minus_best_edge",
                "C3.margin",
                ">=",
                "swap:boundary",
                "+0.004 (+0.003 against -0.001)",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "best_edge_minus_host",
                "C3.edge_drop_relative_min",
                "<",
                "swap:boundary:edges_at_host",
                "-0.001 and -0.002 (0.17% and 0.33% of the score)",
                power=(("paper", 0.115),),
                powered_at=(("paper", (("swap_items", 3000),), 0.865),),  # 40% with 1,000 items, 76.5% with 2,000
            ),
            ConditionSpec(
                "best_middle_minus_host",
                "C3.host_margin",
                ">=",
                "swap:boundary:middle_at_host_margin",
                "+0.003",
                power=(("paper", 1.0),),
            ),
        ),
        "swap:null",
        "swap:paper",
    ),
    Claim(
        "C4",
        "mid-block LoRA beats full LoRA",
        "§4.4, Fig. 7",
        "lora",
        ITEMS_AND_SEEDS,
        SEGMENTS + "; the mid-block: decoder layers 20-80%",
        (
            ConditionSpec(
                "{role}_minus_full",
                "C4.margin",
                ">=",
                "lora:hardest",
                "+0.095 (0.375 against 0.28)",
                power=((QUIET, 0.915), (NOISY, 0.25)),
                powered_at=((NOISY, (("seeds", 10),), 0.895),),
            ),
            ConditionSpec(
                "{role}_minus_first",
                "C4.margin",
                ">",
                "lora:hardest_first",
                "+0.155",
                power=((QUIET, 0.99), (NOISY, 0.485)),
                powered_at=((NOISY, (("seeds", 5),), 0.915),),
            ),
            ConditionSpec(
                "{role}_minus_last",
                "C4.margin",
                ">",
                "lora:hardest_last",
                "+0.175",
                power=((QUIET, 0.995), (NOISY, 0.55)),
                powered_at=((NOISY, (("seeds", 5),), 0.96),),
            ),
        ),
        "lora:null",
        "lora:paper",
    ),
    Claim(
        "C4:M{count}",
        "inverted U of single-segment LoRA",
        "App. A, Tables 1-2",
        "lora",
        ITEMS_AND_SEEDS,
        SEGMENTS,
        (
            ConditionSpec(
                "middle_minus_best_edge",
                "C4.margin",
                ">=",
                "lora:hardest_u",
                "+0.11 (0.33 against 0.22)",
                power=((QUIET, 0.99), (NOISY, 0.31)),
                powered_at=((NOISY, (("seeds", 5),), 0.885),),
            ),
            ConditionSpec(
                "score_range", "C4.min_score_range", ">", "lora:null", "0.155", power=((QUIET, 1.0), (NOISY, 0.945))
            ),
        ),
        "lora:null",
        "lora:paper",
    ),
    Claim(
        "C4-control",
        "layer position, not budget, explains the gain",
        "referee's control for §4.4",
        "lora",
        ITEMS_AND_SEEDS,
        "the mid-block (20-80%), random layer sets of its size, the first and the last 20%",
        (
            ConditionSpec(
                "middle_minus_random_mean",
                "C4.margin",
                ">",
                "lora:hardest_random",
                "+0.05",
                power=((QUIET, 0.81), (NOISY, 0.135)),
                powered_at=((NOISY, (("seeds", 20),), 0.93),),
            ),
            ConditionSpec(
                "middle_minus_first_20pct",
                "C4.margin",
                ">",
                "lora:hardest_first",
                "+0.11",
                power=((QUIET, 0.98), (NOISY, 0.39)),
                powered_at=((NOISY, (("seeds", 10),), 0.99),),
            ),
            ConditionSpec(
                "middle_minus_last_20pct",
                "C4.margin",
                ">",
                "lora:hardest_last",
                "+0.13",
                power=((QUIET, 1.0), (NOISY, 0.49)),
                powered_at=((NOISY, (("seeds", 5),), 0.88),),
            ),
        ),
        "lora:null",
        "lora:paper",
    ),
    Claim(
        "C5",
        "probing emergence in the last layers",
        "§4.3, Fig. 3",
        "layers",
        JACKKNIFE,
        PLATEAU_TAIL,
        (
            ConditionSpec(
                "dormant_max",
                "C5.dormant_max",
                "<=",
                "layers:boundary:dormant_max",
                "< 0.05",
                scale="proportion",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "tail_rise",
                "C5.rise_min",
                ">=",
                "layers:boundary:tail_rise",
                "> 0.55 (below 0.05, then over 0.60)",
                power=(("paper", 1.0),),
            ),
        ),
        "layers:null",
        "layers:paper",
    ),
    Claim(
        "C6",
        "independent convergence in three stages",
        "§4.2, Fig. 2",
        "layers",
        JACKKNIFE,
        "row 0 (embeddings) to row 1; the plateau rows 1.. before the tail; the last row",
        (
            ConditionSpec(
                "min_track_pearson",
                "C6.track_pearson_min",
                ">=",
                "layers:boundary:min_track_pearson",
                scale="fisher",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "{model}_transition_ratio",
                "C6.transition_ratio_min",
                ">=",
                "layers:boundary:transition_ratio",
                scale="log",
                power=(("paper", 0.925),),
            ),
            ConditionSpec(
                "{model}_rank_collapse_ratio",
                "C6.collapse_ratio_max",
                "<=",
                "layers:boundary:rank_collapse_ratio",
                "~0.2 (~0.05 to < 0.01)",
                scale="log",
                power=(("paper", 1.0),),
            ),
            ConditionSpec(
                "{model}_norm_explode_ratio",
                "C6.explode_ratio_min",
                ">=",
                "layers:boundary:norm_explode_ratio",
                "> 2 (explodes to over 500)",
                scale="log",
                power=(("paper", 1.0),),
            ),
        ),
        "layers:null",
        "layers:paper",
    ),
    Claim(
        "C7",
        "weight change explains the representation shift",
        "Fig. 5",
        "layers",
        JACKKNIFE + "; the weight change is exact",
        "every decoder layer",
        (
            ConditionSpec(
                "r_weight_change_cosine",
                "C7.cosine_r_max",
                "<=",
                "layers:boundary:r_weight_change_cosine",
                "-0.79 (OLMo2-13B)",
                scale="fisher",
                power=(("paper", 1.0), ("paper, r = -0.79", 0.92)),
            ),
            ConditionSpec(
                "r_weight_change_{metric}",
                "C7.spectral_r_min",
                ">=",
                "layers:boundary:r_weight_change_spectral",
                "> 0.8",
                scale="fisher",
                power=(("paper", 1.0), ("paper, r = -0.79", 1.0)),
            ),
        ),
        "layers:null",
        "layers:paper",
    ),
    Claim(
        "C8",
        "mid-block LoRA retains the most",
        "App. B, Table 4",
        "lora",
        ITEMS_AND_SEEDS,
        "the middle arm against full LoRA and the edge masks",
        (
            ConditionSpec(
                "closest_margin",
                "C8.margin",
                ">",
                "lora:hardest_retention",
                "+0.07 (14.54 against 14.61)",
                power=((QUIET, 0.29), (NOISY, 0.285)),
                # 70% and 77% with 10 and 20 seeds on 100 texts (the base's one measurement bounds it); 100% with
                # 10 seeds on 1,000 texts, 26.5% and 71.5% with 3 and 5 seeds on 1,000 (sd 0.05)
                powered_at=(
                    (QUIET, (("seeds", 10), ("texts", 300)), 0.96),
                    (NOISY, (("seeds", 10), ("texts", 300)), 0.955),
                ),
            ),
            ConditionSpec("{set}_margin", "C8.margin", ">", "lora:hardest_retention", decides=False),
        ),
        "lora:null",
        "lora:paper",
    ),
)

# The directional hypotheses (§3.3-3.4): one condition per depth band, the same for every hypothesis; their
# designs differ by the level the metric is measured at (eq. 8's per-sample differences, eq. 9's dataset
# matrices) and for rank deficiency, an integer count decided exactly.
SAMPLE_LEVEL = ("D:prompt_entropy", "D:sparsity", "D:curvature")
DATASET_LEVEL = ("D:dataset_entropy", "D:effective_rank")
EXACT_COUNT = ("D:rank_deficiency",)


def _band(threshold: str, boundary: str) -> ConditionSpec:
    return ConditionSpec(
        "{band}_band_delta", threshold, "< or >", boundary, paper_effect="a direction, no size (§3.3-3.4)"
    )


DIRECTIONAL_BANDS = {
    **dict.fromkeys(SAMPLE_LEVEL, _band("directional.relative_margin", "layers:boundary:directional_sample")),
    **{
        key: _band("directional.relative_margin", f"layers:boundary:directional_{key.removeprefix('D:')}")
        for key in DATASET_LEVEL
    },
    **dict.fromkeys(EXACT_COUNT, _band("directional.margin", EXACT)),
}


def _directional(key: str, spec: ConditionSpec) -> Claim:
    return Claim(
        key,
        key,
        "§3.3-3.4",
        "directional",
        EXACT_COUNT_RESAMPLING
        if spec.boundary == EXACT
        else JACKKNIFE + " (paired: both models lose the same samples)",
        "first 20%, middle, last 20% of decoder layers (depth.layer_groups)",
        (spec,),
        "layers:null",
        notes=("the paper gives directions, not sizes: no power design",),
    )


CLAIMS: dict[str, Claim] = {
    **{claim.key: claim for claim in _CLAIMS},
    **{key: _directional(key, spec) for key, spec in DIRECTIONAL_BANDS.items()},
}


def claim(key: str) -> Claim:
    """The entry of verdict key ``key`` (``C4:M5`` reads ``C4:M{count}``, ``C3 M=5`` and ``C3:base_into_sft:M5``
    read ``C3``, ``D:*`` the directional entry)."""
    if key in CLAIMS:
        return CLAIMS[key]
    if key.startswith("C4:M"):
        return CLAIMS["C4:M{count}"]
    if key.startswith("C3"):
        return CLAIMS["C3"]
    raise KeyError(f"no claim {key!r} is declared; declared: {sorted(CLAIMS)}")


@functools.lru_cache(maxsize=4096)
def condition(key: str, name: str) -> ConditionSpec:
    """The entry of condition ``name`` of verdict key ``key`` (looked up once per pair: predicates run on every
    resample)."""
    return claim(key).condition(name)


def open_designs() -> list[tuple[str, str, str]]:
    """(claim, condition, why) for every condition no simulation yet puts at its threshold."""
    return [
        (entry.key, spec.name, spec.boundary.removeprefix(OPEN))
        for entry in CLAIMS.values()
        for spec in entry.conditions
        if spec.is_open
    ]


def implication_holds(t: dict) -> bool:
    """Whether C1's CKA conditions imply its lowest-layer condition under thresholds ``t``: every plateau row at
    least ``cka_plateau_min`` and the last row at least ``cka_drop_min`` below the plateau mean (so at most
    ``1 - cka_drop_min``, CKA being at most 1) leave the last row below every plateau row."""
    return t["C1"]["cka_plateau_min"] > 1 - t["C1"]["cka_drop_min"]


def simulated_designs() -> dict[str, dict[str, tuple[str, ...]]]:
    """``family:scenario`` -> {claim: the conditions it puts at their threshold}, for every simulated design."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for entry in CLAIMS.values():
        for spec in entry.conditions:
            if spec.is_simulated and spec.decides:
                names = out.setdefault(spec.boundary, {}).setdefault(entry.key, ())
                out[spec.boundary][entry.key] = (*names, spec.name)
    return out
