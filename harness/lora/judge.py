"""A LoRA study's verdicts (§4.4, App. A-B) from its scored runs.

Verdicts use the mean over seeds, with intervals from one joint resampling of
the scored items (paired across arms), the retention texts and the seeds; any
pick of a best arm is redone inside every resample, and the intervals are
widened for few seeds (``intervals``).

``study`` below is a ``harness.lora.study.LoraStudy`` whose runs are done: these
functions read its plan, settings, thresholds, runs and untuned scores, and
train nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TypeAlias

import numpy as np

from harness import depth
from harness.lora.plan import edge_masks
from harness.verdicts import claims


def items(study, label: str) -> np.ndarray:
    """(seeds, items) task scores of one arm."""
    return np.array([study.runs[(label, seed)]["task"]["per_item"] for seed in study.settings.seeds], dtype=float)


def score_matrix(study, labels: list[str]) -> np.ndarray:
    """(arms, seeds, items) task scores of ``labels``, stacked once for every resample."""
    return np.stack([items(study, label) for label in labels])


def counts(drawn: np.ndarray, size: int) -> np.ndarray:
    """(resamples, size): how often each index was drawn in each row of ``drawn`` (resamples, draws)."""
    rows = drawn.shape[0]
    offsets = (drawn + size * np.arange(rows)[:, None]).ravel()
    return np.bincount(offsets, minlength=rows * size).reshape(rows, size).astype(float)


def count_weighted(spec: str, values: np.ndarray, *weights: np.ndarray) -> np.ndarray:
    """``np.einsum(spec, values, *weights)`` with draw counts ``weights``, NaN wherever a non-finite value was drawn
    (an undrawn one, weighted 0, must not count: 0 · NaN would)."""
    finite = np.isfinite(values)
    total = np.einsum(spec, np.where(finite, values, 0.0), *weights, optimize=True)
    if not finite.all():
        drawn_bad = np.einsum(spec, (~finite).astype(float), *weights, optimize=True)
        total[drawn_bad > 0] = np.nan
    return total


def resampled_means(matrix: np.ndarray, seeds: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """(resamples, arms): each arm's mean task score over the seeds and items of each resample (rows of
    ``seeds`` and ``drawn``, drawn with replacement).

    A resample's mean is the count-weighted sum over the distinct seeds and items: all resamples in one
    contraction instead of one gather each (binary per-item scores give the same sums exactly)."""
    n_seeds, n_items = matrix.shape[1:]
    total = count_weighted("asi,rs,ri->ra", matrix, counts(seeds, n_seeds), counts(drawn, n_items))
    return total / (seeds.shape[1] * drawn.shape[1])


def retention(result: dict) -> dict[str, dict | None]:
    """Per retention text set, the per-text NLLs and token counts of one run (None: the set was unavailable)."""
    return {
        name: (None if "unavailable" in value else value["per_text"]) for name, value in result["retention"].items()
    }


# A judge gives the verdicts of many resamples at once: (seed indices, item indices, text indices per set or
# None), each with one row per resample, in; one verdict per row, or every row's conditions at once, out. A
# point judge gives the verdict of the one row that draws every seed and item once: the data's own.
Judge: TypeAlias = Callable[[np.ndarray, np.ndarray, dict | None], "list[claims.Verdict] | claims.Resampled"]
PointJudge: TypeAlias = Callable[[np.ndarray, np.ndarray, dict | None], claims.Verdict]
Indices: TypeAlias = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]
SCHEMES = (("joint", (True, True)), ("seeds", (True, False)), ("items", (False, True)))  # resample seeds?, items?


@functools.lru_cache(maxsize=16)
def resample_indices(
    seed: int, resamples: int, n_seeds: int, n_items: int, n_texts: tuple[tuple[str, int], ...]
) -> dict[str, Indices | None]:
    """Per scheme (``SCHEMES``: joint, seeds-only, items-only), the seed, item and text indices of each resample,
    drawn in turn (its seeds, items, then each text set's) from one generator seeded with ``seed``; None without
    resamples. Every verdict of a study, and every study of the same sizes, reads the same draws: drawn once per
    process, as read-only arrays."""
    rng = np.random.default_rng(seed)
    every_seed, every_item = np.arange(n_seeds), np.arange(n_items)

    def draw(seeds: bool, drawn_items: bool):
        return (
            rng.integers(0, n_seeds, n_seeds) if seeds else every_seed,
            rng.integers(0, n_items, n_items) if drawn_items else every_item,
            {name: rng.integers(0, n, n) for name, n in n_texts} if drawn_items else None,
        )

    indices: dict[str, Indices | None] = {}
    for scheme, flags in SCHEMES:
        drawn = [draw(*flags) for _ in range(resamples)]
        if not drawn:
            indices[scheme] = None
            continue
        texts = {name: np.stack([d[2][name] for d in drawn]) for name, _ in n_texts} if flags[1] else None
        arrays = (np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn]), texts)
        for array in (*arrays[:2], *(texts or {}).values()):
            array.setflags(write=False)
        indices[scheme] = arrays
    return indices


def judged_with_intervals(study, point: PointJudge, judge: Judge, key: str, title_suffix: str = "") -> claims.Verdict:
    """``point`` on the data, then ``judge`` on joint, seeds-only and items-only resamples (``resample_indices``);
    every condition's interval from those (``claims.with_intervals``)."""
    sampling = study.thresholds["bootstrap"]
    n_seeds = len(study.settings.seeds)
    n_items = items(study, study.plan.arms[0].label).shape[1]
    n_texts = tuple((name, len(texts["nll"])) for name, texts in retention(study.untuned).items() if texts)
    drawn = resample_indices(int(sampling["seed"]), int(sampling["resamples"]), n_seeds, n_items, n_texts)
    verdict = point(np.arange(n_seeds)[None], np.arange(n_items)[None], None)
    schemes = {scheme: judge(*indices) if indices else [] for scheme, indices in drawn.items()}
    note = (
        f"percentile intervals over {sampling['resamples']} resamples of the scored items (paired across "
        f"arms), texts and {n_seeds} seeds, best arms picked anew in each; widened for {n_seeds} seeds "
        "as a t interval would be"
    )
    verdict = claims.with_intervals(
        verdict, schemes["joint"], sampling["confidence"], note, schemes["seeds"], schemes["items"], n_seeds
    )
    verdict.claim = key
    verdict.title += title_suffix
    return verdict


def score_verdict(
    study,
    key: str,
    predicate: Callable[[dict[str, float]], claims.Verdict],
    resampled: Callable[[dict[str, np.ndarray]], claims.Resampled],
    labels: list[str],
    title_suffix: str = "",
) -> claims.Verdict:
    """A verdict on the arms' mean task scores: ``predicate`` on the data, and its conditions on every resample
    at once (``resampled``, the same claim over columns of resamples).

    A condition whose resamples never vary compares arms that scored alike on every item with every seed (both
    0 everywhere, or the same items right): paired resampling then has no item that tells them apart, and its
    percentile interval is the point itself, although unseen items could. Its interval is undefined instead,
    and the verdict says why; when every arm scored one value on every item (all 0: no arm solves one item of
    the task), so is every condition's."""
    matrix = score_matrix(study, labels)

    def point(seeds: np.ndarray, drawn: np.ndarray, _texts) -> claims.Verdict:
        return predicate(dict(zip(labels, resampled_means(matrix, seeds, drawn)[0].tolist(), strict=True)))

    def judge(seeds: np.ndarray, drawn: np.ndarray, _texts) -> claims.Resampled:
        return resampled(dict(zip(labels, resampled_means(matrix, seeds, drawn).T, strict=True)))

    verdict = judged_with_intervals(study, point, judge, key, title_suffix)
    bound = single_score(matrix)
    alike = [c.name for c in verdict.conditions if math.isfinite(c.value) and _never_varies(c)]
    if bound is not None:
        reason = (
            f"every arm scored {bound:g} on every item with every seed: the study cannot tell the arms apart (the "
            "task is at a bound of its score for this model; train longer, or score a task it can learn)"
        )
    elif alike:
        reason = (
            f"{', '.join(alike)}: the arms compared scored alike on every item with every seed, so no resample "
            "could tell them apart; undefined rather than the point"
        )
    else:
        return verdict
    undefined = {c.name for c in verdict.conditions} if bound is not None else set(alike)
    verdict.conditions = [
        replace(c, interval=(math.nan, math.nan)) if c.name in undefined else c for c in verdict.conditions
    ]
    verdict.ci_note = f"{reason}; {verdict.ci_note}"
    return verdict


def _never_varies(condition: claims.Condition) -> bool:
    """Whether a condition's resamples all gave its value: exact (no interval), or a best-of-k pick whose every
    candidate was (an interval of one point)."""
    return condition.interval is None or condition.interval[0] == condition.interval[1]


def single_score(matrix: np.ndarray) -> float | None:
    """The one value every defined score of ``matrix`` takes, or None when they differ (or none is defined)."""
    defined = matrix[np.isfinite(matrix)]
    if defined.size and bool((defined == defined[0]).all()):
        return float(defined[0])
    return None


def unavailable(study, key: str) -> str | None:
    """Why a verdict cannot be given with this study's plan (None when it can)."""
    roles, c4 = study.plan.roles, study.thresholds["C4"]
    masks = set(roles.get("masks", []))
    edges = {"1" * c4["segment_count"], *edge_masks(c4["segment_count"])}
    if key == "C4" and (not roles.get("middle") or not edges <= masks):
        return f"C4 needs the masks {sorted(edges)} and at least one middle mask; this study has {sorted(masks)}"
    if key == "C4" and c4["decides"] == "midblock" and "midblock" not in roles:
        return "C4 is decided by the 20-80% mid-block arm (C4.decides: midblock), which this study lacks"
    if key.startswith("C4:M"):
        count = int(key.removeprefix("C4:M"))
        if count > study.plan.n_layers:
            return (
                f"{study.name} has {study.plan.n_layers} decoder layers: C4 at M = {count} needs at least "
                f"{count}, one per segment (ask for the values it can take with --tune-segments, or set "
                "C4.inverted_u_counts in a claims config)"
            )
        if f"single:{count}" not in roles:
            return (
                f"the single-segment arms for M = {count} are not in this study of {study.name} (its "
                f"inverted-U counts are {c4['inverted_u_counts']}); they add {count} arms "
                f"x {len(study.settings.seeds)} seeds: ask with --tune-segments "
                f"{' '.join(map(str, sorted({*c4['inverted_u_counts'], count})))}"
            )
    if key == "C4-control" and not {"midblock", "random", "first20", "last20"} <= set(roles):
        return "the referee's control needs the mid-block, random-layer and 20% edge arms (the whole study)"
    if key == "C8":
        compared = set(study.thresholds["C8"]["compared"])
        if not roles.get("middle") or not compared <= masks:
            return f"C8 needs the masks {sorted(compared)} and a middle mask; this study has {sorted(masks)}"
        if not study.settings.retention_sets:
            return f"the study of {study.name} measures no retention (its tuning.retention_sets is empty)"
        untuned = study.untuned_scores()
        sets = [name for name, value in retention(untuned).items() if value is None]
        if len(sets) == len(study.settings.retention_sets):
            return f"no retention text set could be loaded for {study.name}: " + "; ".join(
                untuned["retention"][s]["unavailable"] for s in sets
            )
    return None


def verdict(study, key: str) -> claims.Verdict:
    """The verdict ``key`` (C4, C4:M<count>, C4-control or C8) of a study whose plan allows it."""
    roles = study.plan.roles
    t = study.thresholds
    if key == "C4":
        full, first, last = "1" * t["C4"]["segment_count"], *edge_masks(t["C4"]["segment_count"])
        preregistered = roles["midblock"][0] if "midblock" in roles else None
        labels = list(dict.fromkeys([*roles["middle"], *([preregistered] if preregistered else []), full, first, last]))
        return score_verdict(
            study,
            key,
            lambda s: claims.mid_block_beats_full(s, roles["middle"], t, preregistered),
            lambda c: claims.mid_block_resampled(c, roles["middle"], t, preregistered),
            labels,
        )
    if key.startswith("C4:M"):
        count = int(key.removeprefix("C4:M"))
        labels = roles[f"single:{count}"]
        groups = depth.segment_groups(study.plan.n_layers, count)

        def by_segment(s: dict) -> dict:
            return {segment: s[label] for segment, label in enumerate(labels)}

        return score_verdict(
            study,
            key,
            lambda s: claims.single_segment_inverted_u(by_segment(s), groups, t),
            lambda c: claims.single_segment_resampled(by_segment(c), groups),
            labels,
            f", M = {count}",
        )
    if key == "C4-control":
        middle, first, last = roles["midblock"][0], roles["first20"][0], roles["last20"][0]
        labels = list(dict.fromkeys([middle, *roles["random"], first, last]))
        return score_verdict(
            study,
            key,
            lambda s: claims.position_not_budget(s, middle, roles["random"], first, last, t),
            lambda c: claims.position_resampled(c, middle, roles["random"], first, last),
            labels,
        )
    if key == "C8":
        return retention_verdict(study)
    raise KeyError(f"unknown LoRA verdict {key!r}; known: C4, C4:M<count>, C4-control, C8")


def retention_verdict(study) -> claims.Verdict:
    """C8 for the middle arm the study recommends (the best middle mask by task score, picked anew in every
    resample, on the same resampled seeds and items)."""
    t = study.thresholds
    seeds_run = study.settings.seeds
    middle_labels = list(study.plan.roles["middle"])
    labels = list(dict.fromkeys([*middle_labels, *t["C8"]["compared"]]))
    base_texts = {
        name: tuple(np.asarray(texts[key], dtype=float) for key in ("nll", "tokens"))
        for name, texts in retention(study.untuned).items()
        if texts is not None
    }
    arrays = {
        name: tuple(
            np.array(
                [[retention(study.runs[(label, s)])[name][key] for s in seeds_run] for label in labels], dtype=float
            )
            for key in ("nll", "tokens")
        )
        for name in base_texts
    }  # (labels, seeds, texts) each
    middle_scores = score_matrix(study, middle_labels)

    def summed(values: np.ndarray, seeds: np.ndarray, text_counts: np.ndarray) -> np.ndarray:
        """(labels, resamples, drawn seeds): per drawn seed of each resample, the count-weighted sum over its texts."""
        per_seed = count_weighted("lst,rt->lrs", values, text_counts)  # (labels, resamples, seeds run)
        return np.take_along_axis(per_seed, np.broadcast_to(seeds, (len(values), *seeds.shape)), axis=2)

    def distances_of(seeds: np.ndarray, drawn: np.ndarray, texts: dict | None) -> tuple[list, dict[str, np.ndarray]]:
        """Per resample, the middle arm picked and every arm's distance from the base per text set (labels, R)."""
        means = resampled_means(middle_scores, seeds, drawn)
        middles = [middle_labels[i] for i in np.argmax(means, axis=1)]  # the first of equals, as idxmax
        distances: dict[str, np.ndarray] = {}
        for name, (nll, tokens) in arrays.items():
            base_nll, base_tokens = base_texts[name]
            text_counts = counts(texts[name], len(base_nll)) if texts else np.ones((len(seeds), len(base_nll)))
            base_ppl = np.exp((text_counts @ base_nll) / (text_counts @ base_tokens))
            perplexity = np.exp(summed(nll, seeds, text_counts) / summed(tokens, seeds, text_counts)).mean(axis=2)
            distances[name] = np.abs(perplexity - base_ppl)  # (labels, resamples)
        return middles, distances

    def point(seeds: np.ndarray, drawn: np.ndarray, texts: dict | None) -> claims.Verdict:
        middles, distances = distances_of(seeds, drawn, texts)
        by_label = {name: dict(zip(labels, d[:, 0].tolist(), strict=True)) for name, d in distances.items()}
        return claims.retention_closest(by_label, middles[0], t)

    def judge(seeds: np.ndarray, drawn: np.ndarray, texts: dict | None) -> claims.Resampled:
        middles, distances = distances_of(seeds, drawn, texts)
        by_label = {name: dict(zip(labels, d, strict=True)) for name, d in distances.items()}
        return claims.retention_resampled(by_label, middles, t)

    return judged_with_intervals(study, point, judge, "C8")


def minimum_detectable_difference(study, first: str, second: str, power: float = 0.8) -> dict:
    """The smallest true difference in task score between two arms that the study would detect: the
    interval of ``first`` minus ``second`` (the same resamples of items and seeds, widened for few seeds,
    as every C4 verdict's) clears zero with probability ``power`` once the difference is this large.

    With the interval's half-width w at confidence 1 − α, that is w·(1 + z_power / z_{1−α/2}), the
    normal approximation of the sampling distribution the resamples stand for.
    """
    from scipy import stats

    matrix = score_matrix(study, [first, second])
    confidence = study.thresholds["bootstrap"]["confidence"]

    def judge(seeds: np.ndarray, drawn: np.ndarray, _texts) -> list[claims.Verdict]:
        return [
            claims.Verdict(
                "power",
                "difference of two arms",
                [claims.Condition("difference", first_score - second_score, 0.0, ">")],
                "difference",
            )
            for first_score, second_score in resampled_means(matrix, seeds, drawn).tolist()
        ]

    condition = judged_with_intervals(study, lambda *drawn: judge(*drawn)[0], judge, "power").main
    found = {"arms": [first, second], "difference": condition.value, "power": power}
    if condition.interval is None:  # no finite resample: nothing can be detected or ruled out
        return {**found, "interval": None, "half_width": None, "minimum_detectable": None}
    low, high = condition.interval
    half_width = (high - low) / 2
    ratio = stats.norm.ppf(power) / stats.norm.ppf(1 - (1 - confidence) / 2)
    return {**found, "interval": [low, high], "half_width": half_width, "minimum_detectable": half_width * (1 + ratio)}
