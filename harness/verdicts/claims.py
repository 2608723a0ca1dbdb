"""The paper's claims as pure predicates over per-layer series, with three-way outcomes.

A *bundle* maps series names to per-layer values (pandas Series indexed by
profile row 0..L, ``harness.depth``'s numbering: row 0 the embeddings, row r the output of decoder layer r − 1):
pair metrics under their own names (``cka``, ``cosine``, ``weight_change``...),
each model's intrinsic metrics as ``base.NAME`` and ``sft.NAME``. Each predicate
reads the thresholds it is given (the claims config) and returns a Verdict whose
conditions carry their statistic, threshold and the threshold's source.

Outcomes are decided from intervals (``with_intervals`` recomputes every
condition on joint resamples): a condition *holds* when its whole interval clears
the threshold, is *refuted* when its whole interval lies on the wrong side, and is
*inconclusive* otherwise; a statistic without sampling variance (weight change)
is exact and decides on its value; a NaN statistic (nothing to compare, a zero
denominator) is inconclusive, never either outcome. A claim holds when every
deciding condition holds, is refuted when any is refuted, and is inconclusive
otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy import stats

from harness import depth
from harness.verdicts import intervals, registry

Bundle = Mapping[str, "pd.Series | Rows"]
HOLDS, REFUTED, INCONCLUSIVE = "holds", "refuted", "inconclusive"
OUTCOMES = (HOLDS, REFUTED, INCONCLUSIVE)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _clears(value: float, threshold: float, comparison: str) -> bool:
    return {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}[
        comparison
    ]


_OPPOSITE = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


@dataclass(frozen=True)
class Condition:
    name: str
    value: float
    threshold: float
    comparison: str  # ">=", "<=", ">", "<"
    interval: tuple[float, float] | None = None  # None: exact (no sampling variance), decided on the value
    source: str = ""  # where the threshold comes from: the paper (section, figure) or the harness (and why)
    decides: bool = True  # False: reported beside the verdict, not part of it
    plug_in: float | None = None  # the same statistic from the paper's plug-in series, for its figures
    # the scale its jackknife interval is taken on (``intervals.jackknife_interval``): "log" for a ratio of positive
    # quantities, "proportion" for a small proportion; "" as it is
    scale: str = ""
    # a best-of-k statistic: each candidate's own value (label, value); the statistic is the largest of them. Its
    # interval is [the largest of the candidates' lower bounds at confidence 1 − (1 − c)/k, the largest of their
    # upper bounds at c]. It misses the largest true value from below only if some candidate's lower bound lies
    # above its truth (at most k · (1 − c)/2k = (1 − c)/2, Bonferroni), and from above only if the best true
    # candidate's upper bound lies below its truth (at most (1 − c)/2): coverage at least c. A bootstrap interval
    # of the maximum itself sits above the truth at a tie, and the pick of the luckiest candidate would make a
    # claim hold far too often.
    candidates: tuple[tuple[str, float], ...] = ()

    @property
    def picks(self) -> int:
        return max(len(self.candidates), 1)

    @property
    def outcome(self) -> str:
        if not _finite(self.value):
            return INCONCLUSIVE
        if self.interval is None:
            return HOLDS if _clears(self.value, self.threshold, self.comparison) else REFUTED
        low, high = self.interval
        if not (_finite(low) and _finite(high)):
            return INCONCLUSIVE
        if all(_clears(bound, self.threshold, self.comparison) for bound in (low, high)):
            return HOLDS
        if all(_clears(bound, self.threshold, _OPPOSITE[self.comparison]) for bound in (low, high)):
            return REFUTED
        return INCONCLUSIVE

    @property
    def holds(self) -> bool:
        return self.outcome == HOLDS

    def describe(self) -> str:
        value = f"{self.value:.4g}" if _finite(self.value) else "undefined"
        span = f" [{self.interval[0]:.4g}, {self.interval[1]:.4g}]" if self.interval else " (exact)"
        role = "" if self.decides else ", reported only"
        return f"{self.name} = {value}{span} ({self.comparison} {self.threshold:.4g}: {self.outcome}{role})"

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "interval": list(self.interval) if self.interval else None,
            "candidates": [list(pair) for pair in self.candidates],
            "picks": self.picks,
            "outcome": self.outcome,
            "holds": self.holds,
        }


@dataclass
class Verdict:
    claim: str
    title: str
    conditions: list[Condition]
    statistic: str  # the condition shown first in tables
    evidence: dict[str, list] = field(default_factory=dict)
    ci_note: str = ""
    confidence: float = 0.95
    estimator: str = ""  # how the statistics and their intervals were estimated

    @property
    def deciding(self) -> list[Condition]:
        return [c for c in self.conditions if c.decides]

    @property
    def outcome(self) -> str:
        outcomes = [c.outcome for c in self.deciding]
        if outcomes and all(o == HOLDS for o in outcomes):
            return HOLDS
        if REFUTED in outcomes:
            return REFUTED
        return INCONCLUSIVE

    @property
    def holds(self) -> bool:
        return self.outcome == HOLDS

    @property
    def main(self) -> Condition:
        return next(c for c in self.conditions if c.name == self.statistic)

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.main.interval

    def explain(self) -> str:
        note = f" ({self.ci_note})" if self.ci_note else ""
        return (
            f"{self.claim} {self.outcome}: "
            + "; ".join(c.describe() for c in self.conditions)
            + f"; {self.confidence:.0%} intervals{note}"
        )

    def to_dict(self) -> dict:
        main = self.main
        return {
            "claim": self.claim,
            "title": self.title,
            "outcome": self.outcome,
            "holds": self.holds,
            "statistic": self.statistic,
            "value": main.value,
            "threshold": main.threshold,
            "comparison": main.comparison,
            "threshold_source": main.source,
            "ci": list(main.interval) if main.interval else None,
            "ci_note": self.ci_note,
            "estimator": self.estimator,
            "confidence": self.confidence,
            "conditions": [c.to_dict() for c in self.conditions],
            "evidence": self.evidence,
        }


Resamples: TypeAlias = "Sequence[Verdict] | Resampled"  # resampled verdicts, or their conditions all at once


def with_intervals(
    verdict: Verdict,
    resampled: Resamples,
    confidence: float,
    note: str,
    seeds_only: Resamples = (),
    items_only: Resamples = (),
    n_seeds: int = 1,
    jackknife: bool = False,
    normal: bool = False,
) -> Verdict:
    """``verdict`` with every condition's interval from the same conditions on joint resamples.

    Conditions whose value does not vary over the resamples (weight change) stay
    exact. ``jackknife``: the resamples are delete-a-group jackknife replicates, and
    each interval is the estimate ± t_{G−1} standard errors
    (``intervals.jackknife_interval``); otherwise a percentile interval, widened for
    few seeds with ``seeds_only``/``items_only`` resamples
    (``intervals.seed_aware_interval``); ``normal``: the estimate ± z standard
    deviations of the resamples (``intervals.normal_interval``).
    """
    if not resampled:
        verdict.ci_note = note or "no sampling variance to resample"
        verdict.confidence = confidence
        return verdict

    by_name = {  # each resample's conditions by name, looked up once per condition rather than scanned
        id(verdicts): [{c.name: c for c in v.conditions} for v in verdicts]
        for verdicts in (resampled, seeds_only, items_only)
        if not isinstance(verdicts, Resampled)
    }

    candidate_tables: dict[tuple[int, str], list[dict[str, float]]] = {}

    def values(verdicts: Resamples, name: str, candidate: str | None = None) -> np.ndarray:
        if isinstance(verdicts, Resampled):
            return verdicts.values(name, candidate)
        found = [c.get(name) for c in by_name[id(verdicts)]]
        if candidate is None:
            return np.array([_condition_value(c) for c in found], dtype=float)
        key = (id(verdicts), name)
        if key not in candidate_tables:  # every candidate's values of one condition, read once
            candidate_tables[key] = [dict(c.candidates) if c is not None else {} for c in found]
        return np.array([table.get(candidate, math.nan) for table in candidate_tables[key]], dtype=float)

    def interval_of(value: float, name: str, level: float, scale: str, candidate: str | None = None):
        """(interval or None when exact) of one statistic (or one candidate of a best-of-k statistic)."""
        joint = values(resampled, name, candidate)
        finite = joint[np.isfinite(joint)]
        if finite.size and np.ptp(finite) == 0 and _finite(value) and finite[0] == value:
            return None  # no sampling variance: exact
        if jackknife:
            return intervals.jackknife_interval(value, joint, level, scale=scale)
        if normal:
            interval = intervals.normal_interval(value, joint, level)
        elif seeds_only and items_only:
            interval = intervals.seed_aware_interval(
                value,
                joint,
                values(seeds_only, name, candidate),
                values(items_only, name, candidate),
                n_seeds,
                level,
            )
        else:
            interval = intervals.percentile_interval(joint, level)
        if finite.size < 0.9 * len(joint):
            interval = None if not _finite(value) else (math.nan, math.nan)  # undefined too often
        return interval

    conditions = []
    for condition in verdict.conditions:
        level = 1 - (1 - confidence) / condition.picks
        if not condition.candidates:
            interval = interval_of(condition.value, condition.name, level, condition.scale)
            conditions.append(condition if interval is None else replace(condition, interval=interval))
            continue
        # lower bound: some candidate clears it, judged at 1 − (1 − c)/k (a union over the k candidates); upper
        # bound: the best true candidate lies below it, judged at c (no union needed: one interval must hold)
        finite = [(label, value) for label, value in condition.candidates if _finite(value)]
        lows = [(interval_of(v, condition.name, level, condition.scale, label) or (v, v))[0] for label, v in finite]
        highs = [
            (interval_of(v, condition.name, confidence, condition.scale, label) or (v, v))[1] for label, v in finite
        ]
        interval = (max(lows), max(highs)) if finite else (math.nan, math.nan)
        conditions.append(replace(condition, interval=interval))
    verdict.conditions = conditions
    verdict.ci_note = note
    verdict.confidence = confidence
    return verdict


def _value_of(verdict: Verdict, name: str, candidate: str | None = None) -> float:
    """The value of condition ``name`` in ``verdict`` (of one of its candidates, given ``candidate``); NaN if none."""
    return _condition_value(next((c for c in verdict.conditions if c.name == name), None), candidate)


def _condition_value(condition: Condition | None, candidate: str | None = None) -> float:
    if condition is None:
        return math.nan
    value = condition.value if candidate is None else dict(condition.candidates).get(candidate, math.nan)
    return value if _finite(value) else math.nan


def _best_of(
    t: Mapping, claim: str, name: str, scores: Mapping, labels: Sequence, against: float, **given
) -> Condition:
    """Condition ``name``: the best of ``labels``' scores minus ``against``, with every candidate's own
    difference beside it (``Condition.candidates``), so that its interval accounts for the pick
    (``best_of_columns`` on one resample)."""
    columns = {label: _column(scores[label]) for label in labels}
    return _condition_at(t, claim, best_of_columns(name, columns, labels, _column(against), **given))


# --- helpers ----------------------------------------------------------------------------------


def source(t: Mapping, key: str) -> str:
    """The provenance of threshold ``key`` (``C1.cka_drop_min``) from the config's ``provenance`` table."""
    return t.get("provenance", {}).get(key, "")


def _condition(
    t: Mapping,
    claim: str,
    name: str,
    value: float,
    threshold: float | None = None,
    decides: bool | None = None,
    candidates: tuple[tuple[str, float], ...] = (),
) -> Condition:
    """Condition ``name`` of ``claim`` as the registry declares it (threshold key, comparison, scale), its
    threshold read from the config ``t`` (or given, when derived from it) and its provenance beside it."""
    spec = registry.condition(claim, name)
    if threshold is None:
        group, _, setting = spec.threshold.partition(".")
        threshold = 1 - depth.EDGE if spec.threshold == TAIL_KEY else t[group][setting]
    threshold = float(threshold)
    return Condition(
        name,
        _as_float(value),
        threshold,
        spec.comparison,
        source=_provenance(claim, name, source(t, spec.threshold), threshold),
        decides=spec.decides if decides is None else decides,
        scale=spec.scale,
        candidates=candidates,
    )


@functools.lru_cache(maxsize=4096)
def _provenance(claim: str, name: str, reason: str, threshold: float) -> str:
    # formatted once per threshold (and keyed by strings, whose hashes Python keeps): predicates run on every
    # resample
    return registry.condition(claim, name).provenance(reason, threshold)


TAIL_KEY = "depth.tail"  # the depth conditions' threshold: the start of the last 20% of decoder layers


def _as_float(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero or either is undefined: "nothing moved"
    gives no ratio, so no claim can rest on it."""
    if not (_finite(numerator) and _finite(denominator)) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


def tail_split(rows: Sequence[int], n_layers: int | None = None) -> tuple[list[int], list[int]]:
    """(rows before the last 20% of decoder layers, rows in it), by ``depth.is_tail_row``."""
    n_layers = n_layers or max(rows)
    if n_layers < 3:
        raise ValueError("a depth claim needs at least three decoder layers")
    head = [row for row in rows if not depth.is_tail_row(row, n_layers)]
    tail = [row for row in rows if depth.is_tail_row(row, n_layers)]
    if not tail:
        raise ValueError("no layer lies in the last 20% of the depth")
    return head, tail


class Rows:
    """A per-row series as plain arrays (profile rows, values). The predicates run on every resample, where
    pandas' label indexing would cost more than the statistics, so resampled bundles hold these and measured
    ones hold ``pd.Series``; the predicates read both alike."""

    __slots__ = ("rows", "values", "_positions")

    def __init__(self, rows: Sequence[int], values: np.ndarray):
        self.rows = list(rows)
        self.values = values
        # built on first lookup: most resampled series are only read whole
        self._positions: dict[int, int] | None = None

    @property
    def _position(self) -> dict[int, int]:
        if self._positions is None:
            self._positions = {row: i for i, row in enumerate(self.rows)}
        return self._positions

    @classmethod
    def of(cls, bundle: Bundle, name: str) -> Rows:
        """The series ``name`` of ``bundle`` as rows and float values."""
        try:
            value = bundle[name]
        except KeyError:
            raise KeyError(f"claim needs the series {name!r}; the bundle has {sorted(bundle)}") from None
        if isinstance(value, Rows):
            return value
        return cls(value.index.tolist(), value.to_numpy(dtype=float))

    @property
    def last(self) -> int:
        return max(self.rows)

    def __getitem__(self, row: int) -> float:
        return float(self.values[self._position[row]])

    def take(self, rows: Sequence[int]) -> np.ndarray:
        return self.values[[self._position[row] for row in rows]]

    def dropna(self) -> Rows:
        keep = ~np.isnan(self.values)
        return Rows([row for row, k in zip(self.rows, keep, strict=True) if k], self.values[keep])


def _evidence(bundle: Bundle, *names: str) -> dict[str, list]:
    return {name: [None if math.isnan(v) else v for v in Rows.of(bundle, name).values.tolist()] for name in names}


def _aligned(x: Rows, y: Rows) -> tuple[np.ndarray, np.ndarray]:
    """The values of x and y at the rows both define, aligned by row."""
    if x.rows == y.rows:
        return x.values, y.values
    common = [row for row in x.rows if row in y._position]
    return x.take(common), y.take(common)


def _pearson_rows(x: Rows, y: Rows) -> float:
    a, b = _aligned(x, y)
    keep = ~(np.isnan(a) | np.isnan(b))
    return _pearson(a[keep], b[keep])


def _joined(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The values of x and y at the layers both define, aligned by layer (as ``pd.concat(...).dropna()``).

    Series on the same index (every bundle's) are aligned as they stand, without building a frame: the
    predicates run on every resample, so this is the hot path of a verdict.
    """
    if x.index.is_unique and x.index.equals(y.index):
        a, b = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    else:
        joined = pd.concat([x, y], axis=1)
        a, b = joined.iloc[:, 0].to_numpy(dtype=float), joined.iloc[:, 1].to_numpy(dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # By hand rather than np.corrcoef, whose set-up costs more than the arithmetic on a dozen layers: this
    # runs for every resample of every verdict.
    if len(a) < 3 or a.min() == a.max() or b.min() == b.max():  # a constant series has no correlation
        return math.nan
    a, b = _unless_subnormal(a), _unless_subnormal(b)
    centred_a = a - a.sum(dtype=np.float64) / len(a)
    centred_b = b - b.sum(dtype=np.float64) / len(b)
    centred_a, centred_b = centred_a / np.abs(centred_a).max(), centred_b / np.abs(centred_b).max()  # no underflow
    spread_a, spread_b = float(centred_a @ centred_a), float(centred_b @ centred_b)
    if spread_a == 0 or spread_b == 0:
        return math.nan
    return max(-1.0, min(1.0, float(centred_a @ centred_b) / math.sqrt(spread_a * spread_b)))


def _unless_subnormal(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to a largest magnitude of 1 when they are so small that centring them would lose their
    differences (subnormal numbers carry few bits); as they are otherwise, so that r keeps its last bits."""
    largest = np.abs(values).max()
    return values / largest if 0 < largest < 1e-150 else values


def pearson(x: pd.Series, y: pd.Series) -> float:
    """Pearson r over the layers both define; NaN when either is constant (then no claim can rest on it)."""
    return _pearson(*_joined(x, y))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = ~(np.isnan(a) | np.isnan(b))
    return _pearson(stats.rankdata(a[keep], method="average"), stats.rankdata(b[keep], method="average"))


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Pearson r of the average ranks (ties share their mean rank) over the layers both define."""
    return _spearman(*_joined(x, y))


def _skipna(values: np.ndarray, reduce: Callable[[np.ndarray], float]) -> float:
    """``reduce`` over the finite entries (NaN when there are none), as a pandas reduction."""
    missing = np.isnan(values)
    if missing.any():
        values = values[~missing]
    return float(reduce(values)) if values.size else math.nan


# np.median and np.mean, to the last bit, without their set-up, which costs more than the arithmetic on a
# dozen layers: the predicates run on every resample of every verdict.
def _median(values: np.ndarray) -> float:
    ordered = np.sort(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _mean(values: np.ndarray) -> float:
    return values.sum() / len(values)


def _extreme_depth(series: Rows, highest: bool) -> float:
    """Relative depth of the row where ``series`` is highest or lowest (NaN when undefined or flat: a flat
    series has no peak and no lowest layer)."""
    clean = series.dropna()
    if not clean.rows or clean.values.max() == clean.values.min():
        return math.nan
    pick = int(np.argmax(clean.values) if highest else np.argmin(clean.values))  # the first, as idxmax does
    return depth.row_depth(int(clean.rows[pick]), int(series.last))


# --- per-layer claims ---------------------------------------------------------------------------


def cka_plateau_then_drop(bundle: Bundle, t: Mapping) -> Verdict:
    """C1 (§4.2, Fig. 1; eqs. 6-7): CKA on a high plateau over the first ~80% of depth, then a drop in the
    tail; cosine mirrors it (it drops too, and some tail row lies below every plateau row); mean shift small
    over most layers and spiking in the last ones."""
    cka, cosine, shift = (Rows.of(bundle, name) for name in ("cka", "cosine", "mean_shift"))
    head, tail = tail_split(cka.rows)
    last = cka.last
    plateau = cka.take(head)
    conditions = [
        _condition(t, "C1", "cka_plateau_min", _skipna(plateau, np.min)),
        _condition(t, "C1", "cka_drop", _skipna(plateau, _mean) - cka[last]),
        _condition(t, "C1", "cka_lowest_layer_depth", _extreme_depth(cka, highest=False)),
        _condition(t, "C1", "cosine_drop", _skipna(cosine.take(head), _mean) - cosine[last]),
        # "lowest in the tail" as a difference, not the depth of the lowest estimate: at a tie between a plateau
        # row and a tail row that depth is a coin flip on which every jackknife replicate agrees (no variance,
        # so decided exactly, and holding half the time); here some tail row must lie below every plateau row,
        # judged over the tail rows as candidates (``_best_of``)
        _best_of(
            t,
            "C1",
            "cosine_tail_below_plateau",
            {row: -cosine[row] for row in tail},
            tail,
            -_skipna(cosine.take(head), np.min),
        ),
        _condition(
            t,
            "C1",
            "mean_shift_spike_ratio",
            ratio(_skipna(shift.take(tail), np.max), _skipna(shift.take(head), _median)),
        ),
    ]
    return Verdict(
        "C1", "CKA plateau then drop", conditions, "cka_drop", _evidence(bundle, "cka", "cosine", "mean_shift")
    )


def j_shaped_weight_change(bundle: Bundle, t: Mapping) -> Verdict:
    """C2 (eq. 1, §4.3, Fig. 4): weight change low early, climbing after the midpoint, largest in the tail."""
    change = Rows.of(bundle, "weight_change").dropna()  # row 0 (embedding output) has no Q/K/V/O
    n_layers = int(change.last)
    first = {depth.row_of_layer(layer) for layer in depth.layer_groups(n_layers)["first"]}
    early = [row for row in change.rows if row in first]
    after_mid = [row for row in change.rows if depth.row_depth(row, n_layers) >= t["C2"]["midpoint"]]
    conditions = [
        _condition(t, "C2", "early_to_peak", ratio(_skipna(change.take(early), _mean), _skipna(change.values, np.max))),
        _condition(t, "C2", "climb_spearman", _spearman(np.asarray(after_mid, dtype=float), change.take(after_mid))),
        _condition(t, "C2", "peak_layer_depth", _extreme_depth(change, highest=True)),
    ]
    return Verdict("C2", "J-shaped weight change", conditions, "early_to_peak", _evidence(bundle, "weight_change"))


def probing_emergence(bundle: Bundle, t: Mapping) -> Verdict:
    """C5 (§4.3, Fig. 3): logit-lens accuracy near zero over most of the depth, then a sharp rise in the tail."""
    name = f"{t['C5']['model']}.probe_accuracy"
    accuracy = Rows.of(bundle, name)
    head, tail = tail_split(accuracy.rows)
    dormant = _skipna(accuracy.take(head), np.max)
    conditions = [
        _condition(t, "C5", "dormant_max", dormant),
        _condition(t, "C5", "tail_rise", _skipna(accuracy.take(tail), np.max) - dormant),
    ]
    return Verdict("C5", "probing emergence in the last layers", conditions, "tail_rise", _evidence(bundle, name))


def independent_convergence(bundle: Bundle, t: Mapping) -> Verdict:
    """C6 (§4.2, Fig. 2): base and SFT intrinsic curves track each other, in three stages: a jump from
    layer 0 to 1, a plateau, and a tail bottleneck (effective rank collapses, spectral norm explodes)."""
    c = t["C6"]
    tracks = [
        _pearson_rows(*(_tracked(Rows.of(bundle, f"{model}.{m}"), m) for model in ("base", "sft")))
        for m in c["metrics"]
    ]
    conditions = [
        _condition(t, "C6", "min_track_pearson", min(tracks) if tracks and all(map(_finite, tracks)) else math.nan)
    ]
    for model in ("base", "sft"):
        rank, norm = Rows.of(bundle, f"{model}.effective_rank"), Rows.of(bundle, f"{model}.spectral_norm")
        head, _ = tail_split(rank.rows)
        plateau = [row for row in head if row >= 1]
        last = rank.last
        steps = np.abs(np.diff(rank.take(plateau)))
        conditions += [
            _condition(t, "C6", f"{model}_transition_ratio", ratio(abs(rank[1] - rank[0]), _skipna(steps, _median))),
            _condition(
                t, "C6", f"{model}_rank_collapse_ratio", ratio(rank[last], _skipna(rank.take(plateau), _median))
            ),
            _condition(t, "C6", f"{model}_norm_explode_ratio", ratio(norm[last], _skipna(norm.take(plateau), _median))),
        ]
    names = [f"{model}.{m}" for m in c["metrics"] for model in ("base", "sft")]
    return Verdict(
        "C6", "independent convergence in three stages", conditions, "min_track_pearson", _evidence(bundle, *names)
    )


LOG_TRACKED = ("condition_number",)  # tracked on a log scale (see ``_tracked``)


def _tracked(series: Rows, metric: str) -> Rows:
    """The curve C6 correlates for ``metric``: the condition number's logarithm, since its curves span orders of
    magnitude and at N = D it has no expectation (σ_min of a square matrix comes arbitrarily close to 0), while
    its logarithm does; the other metrics as they are."""
    if metric not in LOG_TRACKED:
        return series
    with np.errstate(divide="ignore", invalid="ignore"):
        return Rows(series.rows, np.log(series.values))


def weight_change_explains_shift(bundle: Bundle, t: Mapping) -> Verdict:
    """C7 (Fig. 5): across layers, weight change correlates strongly negatively with cosine similarity and
    strongly positively with spectral metrics."""
    c = t["C7"]
    change = Rows.of(bundle, "weight_change")
    conditions = [_condition(t, "C7", "r_weight_change_cosine", _pearson_rows(change, Rows.of(bundle, "cosine")))]
    for metric in c["spectral_metrics"]:
        conditions.append(
            _condition(t, "C7", f"r_weight_change_{metric}", _pearson_rows(change, Rows.of(bundle, metric)))
        )
    return Verdict(
        "C7",
        "weight change explains the representation shift",
        conditions,
        "r_weight_change_cosine",
        _evidence(bundle, "weight_change", "cosine", *c["spectral_metrics"]),
    )


# --- claims over arms and segments ---------------------------------------------------------------
# Each is written once, over columns: a score per arm label or segment with one entry per resample. The verdict
# on the data is the one-resample case; a study's or a swap's resamples are judged all at once (``Resampled``),
# with the same operations element by element, so each resample's values are those a verdict of its own gives.

Scores: TypeAlias = pd.Series | Mapping  # a score per arm label or segment
Columns: TypeAlias = Mapping[Any, np.ndarray]  # a score per arm label or segment, one per resample: (R,) each


@dataclass(frozen=True)
class Statistic:
    """One condition over R resamples at once: its value per resample, each candidate's own value if it is a
    best-of-k pick, and what ``_condition`` takes beyond them (a threshold derived from the data, whether it
    decides), given per resample where it varies."""

    name: str
    values: np.ndarray  # (R,)
    candidates: tuple[tuple[str, np.ndarray], ...] = ()
    given: tuple[tuple[str, Any], ...] = ()


class Resampled:
    """The conditions of one verdict on R resamples, read by ``with_intervals`` in place of R resampled verdicts."""

    def __init__(self, statistics: Sequence[Statistic]):
        self._statistics = {s.name: s for s in statistics}
        self._candidates = {s.name: dict(s.candidates) for s in statistics}
        self._count = len(statistics[0].values) if statistics else 0

    def __len__(self) -> int:
        return self._count

    def values(self, name: str, candidate: str | None = None) -> np.ndarray:
        """Condition ``name``'s value (or its candidate's) per resample, NaN where undefined (as ``_value_of``)."""
        statistic = self._statistics.get(name)
        if statistic is None:
            return np.full(self._count, math.nan)
        if candidate is not None:
            return self._candidates[name].get(candidate, np.full(self._count, math.nan))
        return np.where(np.isfinite(statistic.values), statistic.values, math.nan)


def _as_python_floats(statistics: Callable) -> Callable:
    """Run ``statistics`` with NumPy as quiet as Python's float arithmetic: inf − inf is NaN, an overflow inf."""

    @functools.wraps(statistics)
    def quiet(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore"):
            return statistics(*args, **kwargs)

    return quiet


def _column(value: float) -> np.ndarray:
    return np.array([value], dtype=float)


def _columns(scores: Scores) -> dict:
    """Scores (label -> float) as columns of one resample: the data's own verdict."""
    return {label: _column(value) for label, value in _by_label(scores).items()}


def _condition_at(t: Mapping, claim: str, statistic: Statistic) -> Condition:
    """The condition of a one-resample ``statistic``."""
    given: dict[str, Any] = {
        key: float(value[0]) if isinstance(value, np.ndarray) else value for key, value in statistic.given
    }
    candidates = tuple((label, float(values[0])) for label, values in statistic.candidates)
    return _condition(t, claim, statistic.name, float(statistic.values[0]), candidates=candidates, **given)


def _conditions_at(t: Mapping, claim: str, statistics: Sequence[Statistic]) -> list[Condition]:
    return [_condition_at(t, claim, statistic) for statistic in statistics]


def _by_label(scores: Scores) -> dict:
    """Scores as a plain dict (label -> float)."""
    if isinstance(scores, pd.Series):
        return dict(zip(scores.index.tolist(), scores.to_numpy(dtype=float).tolist(), strict=True))
    return {label: float(value) for label, value in scores.items()}


def _undefined_like(scores: Columns) -> np.ndarray:
    return np.full(len(next(iter(scores.values()))), math.nan)


@_as_python_floats
def best_of_columns(name: str, scores: Columns, labels: Sequence, against: np.ndarray, **given) -> Statistic:
    """Per resample, the best of ``labels``' scores minus ``against``, with every candidate's own difference
    beside it, so that its interval accounts for the pick. An undefined candidate is skipped (NaN); of equal
    candidates the first is kept."""
    best = np.full(np.shape(against), math.nan)
    candidates = []
    for label in labels:
        value = scores[label] - against
        defined = np.isfinite(value)
        value = np.where(defined, value, math.nan)
        best = np.where(defined & ~(best >= value), value, best)  # also where best is still NaN
        candidates.append((label if isinstance(label, str) else str(label), value))
    return Statistic(name, best, tuple(candidates), tuple(given.items()))


def _highest(scores: Columns, labels: Sequence) -> np.ndarray:
    """Per resample, the highest defined score among ``labels`` (NaN where none is defined)."""
    best = _undefined_like(scores)
    for label in labels:
        value = scores[label]
        best = np.where(~np.isnan(value) & ~(best >= value), value, best)
    return best


def _lowest(scores: Columns, labels: Sequence) -> np.ndarray:
    """Per resample, the lowest defined score among ``labels`` (NaN where none is defined)."""
    low = _undefined_like(scores)
    for label in labels:
        value = scores[label]
        low = np.where(~np.isnan(value) & ~(low <= value), value, low)
    return low


def _mean_defined(scores: Columns, labels: Sequence) -> np.ndarray:
    """Per resample, the mean of the defined scores among ``labels`` (NaN where none is defined), summed in the
    order ``_skipna(…, _mean)`` sums one resample's."""
    if not labels:
        return _undefined_like(scores)
    block = np.stack([scores[label] for label in labels], axis=1)  # (R, k): each row summed as one array is
    means = block.sum(axis=1) / len(labels)
    for row in np.flatnonzero(np.isnan(block).any(axis=1)):  # an undefined arm: the defined ones alone
        means[row] = _skipna(block[row], _mean)
    return means


def _chosen(scores: Columns, chosen: Sequence) -> np.ndarray:
    """Per resample, the score of the label chosen in it."""
    return np.array([scores[label][row] for row, label in enumerate(chosen)], dtype=float)


def _best_label(scores: Mapping, labels: Sequence):
    """The label with the highest defined score (the first of equals, as ``idxmax``)."""
    defined = [label for label in labels if not math.isnan(scores[label])]
    return max(defined, key=scores.__getitem__) if defined else labels[0]


@_as_python_floats
def _swap_statistics(
    scores: Columns, groups: Mapping[str, Sequence[int]], t: Mapping, host: np.ndarray | None
) -> list[Statistic]:
    best_edge = _highest(scores, [*groups["first"], *groups["last"]])
    statistics = [best_of_columns("middle_minus_best_edge", scores, groups["middle"], best_edge)]
    if host is not None:
        statistics += [
            # the smallest drop of interest is a share of the host's own score (a log-likelihood or an accuracy)
            Statistic(
                "best_edge_minus_host",
                best_edge - host,
                given=(("threshold", -float(t["C3"]["edge_drop_relative_min"]) * np.abs(host)),),
            ),
            best_of_columns(
                "best_middle_minus_host", scores, groups["middle"], host, threshold=-float(t["C3"]["host_margin"])
            ),
        ]
    return statistics


def inverted_u_swap(
    scores: Scores, groups: Mapping[str, Sequence[int]], t: Mapping, host: float | None = None
) -> Verdict:
    """C3 (§4.3, Fig. 6): swapping a middle segment scores at least as well as swapping the first or the
    last 20% of layers; against the unswapped host (``host``), the edge swaps lower its score and the
    best middle swap does not lower it beyond ``C3.host_margin``. ``scores`` is indexed by segment;
    ``groups`` says which segments are which (``depth.segment_groups``). The best middle and the best
    edge segment are picked anew in every resample (``inverted_u_swap_resampled``: selection-aware intervals)."""
    values = _by_label(scores)
    statistics = _swap_statistics(_columns(values), groups, t, None if host is None else _column(host))
    return Verdict(
        "C3",
        "inverted-U layer swap",
        _conditions_at(t, "C3", statistics),
        "middle_minus_best_edge",
        {
            "score": list(values.values()),
            **{k: list(v) for k, v in groups.items()},
            **({"host": [host]} if host is not None else {}),
        },
    )


def inverted_u_swap_resampled(
    scores: Columns, groups: Mapping[str, Sequence[int]], t: Mapping, host: np.ndarray | None = None
) -> Resampled:
    """``inverted_u_swap``'s conditions on every resample at once."""
    return Resampled(_swap_statistics(scores, groups, t, host))


@_as_python_floats
def _single_segment_statistics(scores: Columns, groups: Mapping[str, Sequence[int]]) -> list[Statistic]:
    best_edge = _highest(scores, [*groups["first"], *groups["last"]])
    return [
        best_of_columns("middle_minus_best_edge", scores, groups["middle"], best_edge),
        Statistic("score_range", _highest(scores, list(scores)) - _lowest(scores, list(scores))),
    ]


def single_segment_inverted_u(scores: Scores, groups: Mapping[str, Sequence[int]], t: Mapping) -> Verdict:
    """C4, App. A (Tables 1-2): LoRA on one middle segment alone scores at least as well as LoRA on a
    segment in the first or the last 20% of layers, and the scores are not all equal (a flat line is no U).
    ``scores`` is indexed by segment; the best middle and edge segments are picked anew in every resample."""
    values = _by_label(scores)
    return Verdict(
        "C4",
        "inverted U of single-segment LoRA",
        _conditions_at(t, "C4:M{count}", _single_segment_statistics(_columns(values), groups)),
        "middle_minus_best_edge",
        {"score": list(values.values()), **{k: list(v) for k, v in groups.items()}},
    )


def single_segment_resampled(scores: Columns, groups: Mapping[str, Sequence[int]]) -> Resampled:
    """``single_segment_inverted_u``'s conditions on every resample at once."""
    return Resampled(_single_segment_statistics(scores, groups))


def _edge_masks(count: int) -> tuple[str, str, str]:
    return "1" * count, "1" + "0" * (count - 1), "0" * (count - 1) + "1"


@_as_python_floats
def _mid_block_statistics(
    scores: Columns, middle: Sequence[str], t: Mapping, preregistered: str | None
) -> list[Statistic]:
    c = t["C4"]
    full, first, last = _edge_masks(c["segment_count"])
    roles = ["best_middle", *(["midblock"] if preregistered is not None else [])]
    if c["decides"] not in roles:
        raise ValueError(f"C4.decides is {c['decides']!r}; this study has {sorted(roles)}")
    statistics = []
    for role in roles:
        decides = role == c["decides"]
        for edge, other in {"full": scores[full], "first": scores[first], "last": scores[last]}.items():
            name = f"{role}_minus_{edge}"
            # the best middle arm rests on a pick among the middle masks (``best_of_columns``); the mid-block on none
            if role == "best_middle":
                statistics.append(best_of_columns(name, scores, list(middle), other, decides=decides))
            else:
                statistics.append(Statistic(name, scores[preregistered] - other, given=(("decides", decides),)))
    return statistics


def mid_block_beats_full(
    scores: Scores, middle: Sequence[str], t: Mapping, preregistered: str | None = None
) -> Verdict:
    """C4 (§4.4, Fig. 7): at a matched budget, a middle arm scores at least as well as full-depth LoRA
    (``11111``), and LoRA on the first or the last segment alone (``10000``, ``00001``) scores below it.

    Two middle arms are compared: the post-hoc best of the middle masks ``middle`` (picked anew in every
    resample, so its interval carries the selection) and the pre-registered 20-80% mid-block
    ``preregistered``. ``C4.decides`` in the config names the one that decides; the other is reported.
    """
    c = t["C4"]
    values = _by_label(scores)
    conditions = _conditions_at(t, "C4", _mid_block_statistics(_columns(values), middle, t, preregistered))
    return Verdict(
        "C4",
        "mid-block LoRA beats full LoRA",
        conditions,
        f"{c['decides']}_minus_full",
        {
            "arm": [str(label) for label in values],
            "score": list(values.values()),
            "best_middle": [str(_best_label(values, list(middle)))],
            "midblock": [preregistered] if preregistered else [],
            "decides": [c["decides"]],
        },
    )


def mid_block_resampled(
    scores: Columns, middle: Sequence[str], t: Mapping, preregistered: str | None = None
) -> Resampled:
    """``mid_block_beats_full``'s conditions on every resample at once."""
    return Resampled(_mid_block_statistics(scores, middle, t, preregistered))


@_as_python_floats
def _position_statistics(
    scores: Columns, middle: str, random_sets: Sequence[str], first: str, last: str
) -> list[Statistic]:
    top = scores[middle]
    return [
        Statistic("middle_minus_random_mean", top - _mean_defined(scores, random_sets)),
        Statistic("middle_minus_first_20pct", top - scores[first]),
        Statistic("middle_minus_last_20pct", top - scores[last]),
    ]


def position_not_budget(
    scores: Scores, middle: str, random_sets: Sequence[str], first: str, last: str, t: Mapping
) -> Verdict:
    """The referee's control for C4: at the same budget, the pre-registered 20-80% mid-block arm beats arms
    on randomly chosen layers (on average) and on the first and the last 20% of layers, so layer position,
    not rank or parameter count, explains its gain. ``scores`` is indexed by arm label."""
    values = _by_label(scores)
    statistics = _position_statistics(_columns(values), middle, random_sets, first, last)
    return Verdict(
        "C4-control",
        "layer position, not budget, explains the gain",
        _conditions_at(t, "C4-control", statistics),
        "middle_minus_random_mean",
        {
            "arm": [str(label) for label in values],
            "score": list(values.values()),
            "middle": [middle],
            "random": list(random_sets),
        },
    )


def position_resampled(scores: Columns, middle: str, random_sets: Sequence[str], first: str, last: str) -> Resampled:
    """``position_not_budget``'s conditions on every resample at once."""
    return Resampled(_position_statistics(scores, middle, random_sets, first, last))


@_as_python_floats
def _retention_statistics(distances: Mapping[str, Columns], middles: Sequence[str], t: Mapping) -> list[Statistic]:
    compared = t["C8"]["compared"]
    margins = {name: _lowest(d, compared) - _chosen(d, middles) for name, d in distances.items()}
    closest = np.full(len(middles), math.nan)
    for number, margin in enumerate(margins.values()):  # the smallest margin, as Python's min picks it
        closest = margin if number == 0 else np.where(margin < closest, margin, closest)
    return [Statistic("closest_margin", closest), *(Statistic(f"{name}_margin", m) for name, m in margins.items())]


def retention_closest(distances: Mapping[str, Scores], middle: str, t: Mapping) -> Verdict:
    """C8 (App. B, Table 4): after tuning, the middle arm's perplexity on held-out general text is the
    closest to the base model's: closer than full LoRA and the edge masks, on every text set.
    ``distances[set]`` is |perplexity(arm) - perplexity(base)| indexed by arm label."""
    distances = {name: _by_label(d) for name, d in distances.items()}
    statistics = _retention_statistics({name: _columns(d) for name, d in distances.items()}, [middle], t)
    evidence = {
        "middle": [middle],
        **{f"{name}_distance": list(d.values()) for name, d in distances.items()},
        "arm": [str(label) for label in next(iter(distances.values()))] if distances else [],
    }
    return Verdict(
        "C8", "mid-block LoRA retains the most", _conditions_at(t, "C8", statistics), "closest_margin", evidence
    )


def retention_resampled(distances: Mapping[str, Columns], middles: Sequence[str], t: Mapping) -> Resampled:
    """``retention_closest``'s conditions on every resample at once, ``middles`` the middle arm of each."""
    return Resampled(_retention_statistics(distances, middles, t))


CLAIMS: dict[str, Callable[[Bundle, Mapping], Verdict]] = {
    "C1": cka_plateau_then_drop,
    "C2": j_shaped_weight_change,
    "C5": probing_emergence,
    "C6": independent_convergence,
    "C7": weight_change_explains_shift,
}


def with_plug_in(verdict: Verdict, plug_in: Verdict) -> Verdict:
    """``verdict`` with each condition's value from the paper's plug-in series (``plug_in``) beside it."""
    verdict.conditions = [replace(c, plug_in=_value_of(plug_in, c.name)) for c in verdict.conditions]
    return verdict


def evaluate(
    claim: str,
    bundle: Bundle,
    thresholds: Mapping,
    resampled: Sequence[Bundle] = (),
    confidence: float = 0.95,
    note: str = "",
    plug_in: Bundle | None = None,
    estimator: str = "",
) -> Verdict:
    """The verdict of ``claim`` on ``bundle`` (the estimates), every condition with its jackknife interval
    over the ``resampled`` replicates and, given the ``plug_in`` bundle (the paper's plug-in series), its
    plug-in value."""
    predicate = CLAIMS[claim]
    verdict = predicate(bundle, thresholds)
    if plug_in is not None:
        verdict = with_plug_in(verdict, predicate(plug_in, thresholds))
    verdict.estimator = estimator
    return with_intervals(
        verdict,
        [predicate(b, thresholds) for b in resampled],
        confidence,
        note or (f"jackknife intervals over {len(resampled)} groups of the probe samples" if resampled else ""),
        jackknife=True,
    )
