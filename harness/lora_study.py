"""The mid-block LoRA study of one pair (§4.4, App. A-B): its arms, their runs, verdicts and report section.

Every arm has the same budget (rank × layers of the full-depth arm). The plan
holds the M-segment masks of the main comparison (single segments, full depth,
the configured middle masks), the single-segment arms of each M of the inverted
U, the referee's controls (the first and the last 20% of layers, and random
layer sets the size of the mid-block) and the block finder's proposal. Arms
with the same layers are trained once. Verdicts use the mean over seeds, with
intervals from one joint resampling of the scored items (paired across arms),
the retention texts and the seeds; any pick of a best arm is redone inside every
resample, and the intervals are widened for few seeds (``intervals``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import block_finder, claims, depth, lora_runs, models, tuning


@dataclass(frozen=True)
class Plan:
    arms: tuple[tuning.Arm, ...]
    roles: dict[str, list[str]]  # role -> arm labels (an arm can play several roles)
    n_layers: int


def plan_arms(n_layers: int, thresholds: dict, settings: lora_runs.TuneSettings, finder_mask: str | None = None,
              segment_counts: list[int] | None = None) -> Plan:
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
        for mask in tuning.single_segment_masks(m):
            add(f"single:{m}", mask, tuning.mask_layers(mask, n_layers))
    edges = tuning.edge_layers(n_layers)
    add("first20", "first20", edges["first"])
    add("last20", "last20", edges["last"])
    block = tuning.middle_block(n_layers)
    add("midblock", "midblock", block)
    for index, layers in enumerate(tuning.random_layer_sets(n_layers, len(block), c4["random_sets"],
                                                            exclude=(tuple(block),)), start=1):
        add("random", f"random{index}", layers)
    if finder_mask:
        add("finder", finder_mask, tuning.mask_layers(finder_mask, n_layers))
    return Plan(tuple(by_layers.values()), roles, n_layers)


def plan_masks(masks: list[str], n_layers: int, settings: lora_runs.TuneSettings) -> Plan:
    """A study of just the given masks (``harness tune --masks``): verdicts whose arms are present are given."""
    if not masks:
        raise ValueError("no mask to train")
    by_layers: dict[tuple[int, ...], tuning.Arm] = {}
    roles: dict[str, list[str]] = {"masks": []}
    for mask in dict.fromkeys(masks):
        layers = tuple(tuning.mask_layers(mask, n_layers))
        by_layers.setdefault(layers, settings.arm(mask, layers, n_layers))
        roles["masks"].append(by_layers[layers].label)
    counts = {len(mask) for mask in masks}
    roles["middle"] = [m for m in tuning.middle_masks(roles["masks"]) if len(m) == max(counts)]
    return Plan(tuple(by_layers.values()), roles, n_layers)


@dataclass
class LoraStudy:
    """One pair's LoRA arms, run once per session (each run cached on disk), and their verdicts."""

    name: str
    base: models.ModelRef
    thresholds: dict
    settings: lora_runs.TuneSettings
    plan: Plan
    proposal: block_finder.Proposal | None = None
    device: str = "auto"
    runs: dict[tuple[str, int], dict] = field(default_factory=dict)
    untuned: dict | None = None
    verdicts: dict[str, claims.Verdict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    jobs_settings: object | None = None  # arm_jobs.JobSettings: how the runs not in the cache are trained

    # --- running ---------------------------------------------------------------------------

    def jobs(self) -> list[tuple[tuple, int]]:
        """Every (arm, seed) run of the study, in a fixed order."""
        return [(arm, seed) for arm in self.plan.arms for seed in self.settings.seeds]

    def run_shard(self, index: int, count: int, progress: bool = True) -> int:
        """Train and score runs ``index``, ``index + count``, ... of ``jobs()`` (index from 1) into the run cache,
        so that ``count`` processes sharing the cache train a study between them; a later ``run`` reads every
        run back. Returns how many runs this shard holds."""
        from tqdm.auto import tqdm

        if not 1 <= index <= count:
            raise ValueError(f"shard {index}/{count}: the index must lie between 1 and {count}")
        mine = self.jobs()[index - 1::count]
        for arm, seed in tqdm(mine, desc=f"{self.name}: LoRA arms, shard {index}/{count}", disable=not progress):
            lora_runs.run_arm(self.base, arm, seed, self.settings, self.device, progress=progress)
        return len(mine)

    def run(self, progress: bool = True) -> None:
        """Train and score every arm with every seed (cached runs are read back). With ``jobs`` other than
        serial, the runs not in the cache are first trained as submitit jobs (``arm_jobs``)."""
        from tqdm.auto import tqdm

        if self.untuned is not None and len(self.runs) == len(self.plan.arms) * len(self.settings.seeds):
            return
        started = time.perf_counter()
        if self.jobs_settings is not None and self.jobs_settings.executor != "serial":
            from harness import arm_jobs

            arm_jobs.run_study_jobs(self, self.jobs_settings, progress)
        self.untuned = lora_runs.base_scores(self.base, self.settings, self.device)
        jobs = self.jobs()
        for arm, seed in tqdm(jobs, desc=f"{self.name}: LoRA arms", disable=not progress):
            self.runs[(arm.label, seed)] = lora_runs.run_arm(self.base, arm, seed, self.settings, self.device,
                                                             progress=progress)
        self.seconds += time.perf_counter() - started

    # --- scores ------------------------------------------------------------------------------

    def _items(self, label: str) -> np.ndarray:
        """(seeds, items) task scores of one arm."""
        return np.array([self.runs[(label, seed)]["task"]["per_item"] for seed in self.settings.seeds], dtype=float)

    def scores(self) -> pd.Series:
        """Mean task score over seeds, per arm label."""
        self.run()
        return pd.Series({arm.label: float(self._items(arm.label).mean()) for arm in self.plan.arms})

    def _score_matrix(self, labels: list[str]) -> np.ndarray:
        """(arms, seeds, items) task scores of ``labels``, stacked once for every resample."""
        return np.stack([self._items(label) for label in labels])

    @staticmethod
    def _resampled_scores(matrix: np.ndarray, labels: list[str], seeds: np.ndarray, items: np.ndarray
                          ) -> dict[str, float]:
        """Mean task score per arm over the given seed and item indices (drawn with replacement)."""
        return dict(zip(labels, matrix[:, seeds][:, :, items].mean(axis=(1, 2)).tolist(), strict=True))

    def _judged_with_intervals(self, judge: Callable[[np.ndarray, np.ndarray, dict | None], claims.Verdict],
                               key: str, title_suffix: str = "") -> claims.Verdict:
        """``judge(seed_index, item_index, text_index)`` on the data, then on joint, seeds-only and items-only
        resamples; every condition's interval from those (``claims.with_intervals``)."""
        sampling = self.thresholds["bootstrap"]
        n_seeds = len(self.settings.seeds)
        n_items = self._items(self.plan.arms[0].label).shape[1]
        n_texts = {name: len(texts["nll"]) for name, texts in self._retention(self.untuned).items() if texts}
        rng = np.random.default_rng(sampling["seed"])
        every_seed, every_item = np.arange(n_seeds), np.arange(n_items)

        def draw(seeds: bool, items: bool):
            return (rng.integers(0, n_seeds, n_seeds) if seeds else every_seed,
                    rng.integers(0, n_items, n_items) if items else every_item,
                    {name: rng.integers(0, n, n) for name, n in n_texts.items()} if items else None)

        verdict = judge(every_seed, every_item, None)
        schemes = {scheme: [judge(*draw(*flags)) for _ in range(sampling["resamples"])]
                   for scheme, flags in (("joint", (True, True)), ("seeds", (True, False)), ("items", (False, True)))}
        note = (f"percentile intervals over {sampling['resamples']} resamples of the scored items (paired across "
                f"arms), texts and {n_seeds} seeds, best arms picked anew in each; widened for {n_seeds} seeds "
                "as a t interval would be")
        verdict = claims.with_intervals(verdict, schemes["joint"], sampling["confidence"], note,
                                        schemes["seeds"], schemes["items"], n_seeds)
        verdict.claim = key
        verdict.title += title_suffix
        return verdict

    def _score_verdict(self, key: str, predicate: Callable[[dict[str, float]], claims.Verdict], labels: list[str],
                       title_suffix: str = "") -> claims.Verdict:
        self.run()
        matrix = self._score_matrix(labels)
        return self._judged_with_intervals(
            lambda seeds, items, _texts: predicate(self._resampled_scores(matrix, labels, seeds, items)), key,
            title_suffix)

    # --- verdicts ----------------------------------------------------------------------------

    def verdict_keys(self) -> list[str]:
        counts = sorted(int(role.removeprefix("single:")) for role in self.plan.roles if role.startswith("single:"))
        return ["C4", *(f"C4:M{m}" for m in counts), "C4-control", "C8"]

    def unavailable(self, key: str) -> str | None:
        """Why a verdict cannot be given with this study's plan (None when it can)."""
        roles, c4 = self.plan.roles, self.thresholds["C4"]
        masks = set(roles.get("masks", []))
        edges = {"1" * c4["segment_count"], *_edges(c4["segment_count"])}
        if key == "C4" and (not roles.get("middle") or not edges <= masks):
            return f"C4 needs the masks {sorted(edges)} and at least one middle mask; this study has {sorted(masks)}"
        if key == "C4" and c4["decides"] == "midblock" and "midblock" not in roles:
            return "C4 is decided by the 20-80% mid-block arm (C4.decides: midblock), which this study lacks"
        if key.startswith("C4:M"):
            count = int(key.removeprefix("C4:M"))
            if f"single:{count}" not in roles:
                return (f"the single-segment arms for M = {count} are not in this study of {self.name} (its "
                        f"inverted-U counts are {c4['inverted_u_counts']}); they add {count} arms "
                        f"x {len(self.settings.seeds)} seeds: ask with --tune-segments "
                        f"{' '.join(map(str, sorted({*c4['inverted_u_counts'], count})))}")
        if key == "C4-control" and not {"midblock", "random", "first20", "last20"} <= set(roles):
            return "the referee's control needs the mid-block, random-layer and 20% edge arms (the whole study)"
        if key == "C8":
            compared = set(self.thresholds["C8"]["compared"])
            if not roles.get("middle") or not compared <= masks:
                return f"C8 needs the masks {sorted(compared)} and a middle mask; this study has {sorted(masks)}"
            if not self.settings.retention_sets:
                return f"the study of {self.name} measures no retention (its tuning.retention_sets is empty)"
            sets = [name for name, value in self._retention(self.untuned_scores()).items() if value is None]
            if len(sets) == len(self.settings.retention_sets):
                return (f"no retention text set could be loaded for {self.name}: "
                        + "; ".join(self.untuned_scores()["retention"][s]["unavailable"] for s in sets))
        return None

    def all_verdicts(self) -> dict[str, claims.Verdict]:
        """Every verdict this study's plan allows; the others are listed in ``skipped`` with the reason."""
        for key in self.verdict_keys():
            reason = self.unavailable(key)
            if reason:
                self.skipped[key] = reason
            else:
                self.verdict(key)
        return self.verdicts

    def untuned_scores(self) -> dict:
        self.run()
        return self.untuned

    def verdict(self, key: str) -> claims.Verdict:
        if key in self.verdicts:
            return self.verdicts[key]
        reason = self.unavailable(key)
        if reason:
            raise LookupError(reason)
        roles = self.plan.roles
        t = self.thresholds
        if key == "C4":
            full, first, last = "1" * t["C4"]["segment_count"], *_edges(t["C4"]["segment_count"])
            preregistered = roles["midblock"][0] if "midblock" in roles else None
            labels = list(dict.fromkeys([*roles["middle"], *([preregistered] if preregistered else []),
                                         full, first, last]))
            verdict = self._score_verdict(
                key, lambda s: claims.mid_block_beats_full(s, roles["middle"], t, preregistered), labels)
        elif key.startswith("C4:M"):
            count = int(key.removeprefix("C4:M"))
            labels = roles[f"single:{count}"]
            groups = depth.segment_groups(self.plan.n_layers, count)

            def by_segment(s: dict[str, float]) -> claims.Verdict:
                return claims.single_segment_inverted_u({segment: s[label] for segment, label in enumerate(labels)},
                                                        groups, t)

            verdict = self._score_verdict(key, by_segment, labels, f", M = {count}")
        elif key == "C4-control":
            middle, first, last = roles["midblock"][0], roles["first20"][0], roles["last20"][0]
            labels = list(dict.fromkeys([middle, *roles["random"], first, last]))
            verdict = self._score_verdict(
                key, lambda s: claims.position_not_budget(s, middle, roles["random"], first, last, t), labels)
        elif key == "C8":
            verdict = self._retention_verdict()
        else:
            raise KeyError(f"unknown LoRA verdict {key!r}; known: C4, C4:M<count>, C4-control, C8")
        self.verdicts[key] = verdict
        return verdict

    # --- retention (C8) ----------------------------------------------------------------------

    @staticmethod
    def _retention(result: dict) -> dict[str, dict | None]:
        return {name: (None if "unavailable" in value else value["per_text"])
                for name, value in result["retention"].items()}

    def _retention_verdict(self) -> claims.Verdict:
        """C8 for the middle arm the study recommends (the best middle mask by task score, picked anew in every
        resample, on the same resampled seeds and items)."""
        t = self.thresholds
        middle_labels = list(self.plan.roles["middle"])
        labels = list(dict.fromkeys([*middle_labels, *t["C8"]["compared"]]))
        base_texts = {name: tuple(np.asarray(texts[key], dtype=float) for key in ("nll", "tokens"))
                      for name, texts in self._retention(self.untuned).items() if texts is not None}
        arrays = {name: tuple(np.array([[self._retention(self.runs[(label, s)])[name][key]
                                         for s in self.settings.seeds] for label in labels], dtype=float)
                              for key in ("nll", "tokens"))
                  for name in base_texts}  # (labels, seeds, texts) each
        middle_scores = self._score_matrix(middle_labels)

        def judge(seeds: np.ndarray, items: np.ndarray, texts: dict | None) -> claims.Verdict:
            means = middle_scores[:, seeds][:, :, items].mean(axis=(1, 2))
            middle = middle_labels[int(np.argmax(means))]  # the first of equals, as idxmax
            distances = {}
            for name, (nll, tokens) in arrays.items():
                i = texts[name] if texts else slice(None)
                base_nll, base_tokens = base_texts[name]
                base_ppl = np.exp(base_nll[i].sum() / base_tokens[i].sum())
                perplexity = np.exp(nll[:, seeds][:, :, i].sum(2) / tokens[:, seeds][:, :, i].sum(2)).mean(1)
                distances[name] = dict(zip(labels, np.abs(perplexity - base_ppl).tolist(), strict=True))
            return claims.retention_closest(distances, middle, t)

        return self._judged_with_intervals(judge, "C8")

    # --- power -------------------------------------------------------------------------------

    def minimum_detectable_difference(self, first: str, second: str, power: float = 0.8) -> dict:
        """The smallest true difference in task score between two arms that this study would detect: the
        interval of ``first`` minus ``second`` (the same resamples of items and seeds, widened for few seeds,
        as every C4 verdict's) clears zero with probability ``power`` once the difference is this large.

        With the interval's half-width w at confidence 1 − α, that is w·(1 + z_power / z_{1−α/2}), the
        normal approximation of the sampling distribution the resamples stand for.
        """
        from scipy import stats

        matrix = self._score_matrix([first, second])
        confidence = self.thresholds["bootstrap"]["confidence"]

        def judge(seeds: np.ndarray, items: np.ndarray, _texts) -> claims.Verdict:
            scores = matrix[:, seeds][:, :, items].mean(axis=(1, 2))
            return claims.Verdict("power", "difference of two arms",
                                  [claims.Condition("difference", float(scores[0] - scores[1]), 0.0, ">")],
                                  "difference")

        condition = self._judged_with_intervals(judge, "power").main
        found = {"arms": [first, second], "difference": condition.value, "power": power}
        if condition.interval is None:  # no finite resample: nothing can be detected or ruled out
            return {**found, "interval": None, "half_width": None, "minimum_detectable": None}
        low, high = condition.interval
        half_width = (high - low) / 2
        ratio = stats.norm.ppf(power) / stats.norm.ppf(1 - (1 - confidence) / 2)
        return {**found, "interval": [low, high], "half_width": half_width,
                "minimum_detectable": half_width * (1 + ratio)}

    # --- report ------------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """One row per arm and seed: where it adapts, what it costs, how it scores."""
        self.run()
        rows = []
        roles_of = {}
        for role, labels in self.plan.roles.items():
            for label in labels:
                roles_of.setdefault(label, []).append(role)
        for arm in self.plan.arms:
            for seed in self.settings.seeds:
                run = self.runs[(arm.label, seed)]
                row = {"arm": arm.label, "roles": ",".join(roles_of.get(arm.label, [])),
                       "layers": " ".join(map(str, arm.layers)), "rank": arm.rank, "alpha": arm.alpha,
                       "trainable": run["trainable_parameters"], "budget_error": round(arm.budget_error, 4),
                       "seed": seed, "score": run["task"]["score"], "stderr": run["task"]["stderr"],
                       "answer_loglik": run["likelihood"]["score"], "final_loss": run["final_loss"],
                       "train_s": run["seconds"]["train"], "score_s": run["seconds"]["score"]}
                for name, value in run["retention"].items():
                    row[f"ppl:{name}"] = value.get("perplexity")
                rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per arm: mean and spread over seeds, with the untuned base as the first row."""
        table = self.table()
        numeric = ["score", "stderr", "answer_loglik"] + [c for c in table.columns if c.startswith("ppl:")]
        grouped = table.groupby("arm", sort=False)
        summary = grouped[numeric].mean()
        summary.insert(1, "score_sd", grouped["score"].std(ddof=1) if len(self.settings.seeds) > 1 else np.nan)
        summary.insert(0, "trainable", grouped["trainable"].first())
        summary.insert(0, "rank", grouped["rank"].first())
        summary.insert(0, "roles", grouped["roles"].first())
        base = self.untuned
        base_row = {"roles": "untuned", "rank": 0, "trainable": 0, "score": base["task"]["score"],
                    "score_sd": np.nan, "stderr": base["task"]["stderr"], "answer_loglik": base["likelihood"]["score"]}
        for name, value in base["retention"].items():
            base_row[f"ppl:{name}"] = value.get("perplexity")
        return pd.concat([pd.DataFrame([base_row], index=["base"]), summary])

    def power(self) -> dict | None:
        """The minimum detectable difference between the best middle mask and full-depth LoRA (C4's
        comparison), for the report; None when the study lacks either arm."""
        full = "1" * self.thresholds["C4"]["segment_count"]
        middle = self.plan.roles.get("middle") or []
        labels = {arm.label for arm in self.plan.arms}
        if full not in labels or not middle:
            return None
        scores = self.scores()
        best = max(middle, key=lambda label: scores[label])
        return self.minimum_detectable_difference(best, full)

    def finder_rank(self) -> dict | None:
        """Where the block finder's arm ranks among all trained arms by mean score (1 = best)."""
        if self.proposal is None:
            return None
        scores = self.scores().sort_values(ascending=False)
        label = self.plan.roles["finder"][0]
        rank = int(scores.rank(ascending=False, method="min")[label])
        return {**self.proposal.to_dict(), "arm": label, "rank": rank, "of": len(scores),
                "score": float(scores[label]), "best_arm": str(scores.index[0]), "best_score": float(scores.iloc[0])}

    def evidence(self) -> dict:
        """The per-item task scores and per-text retention of every run and of the untuned base: what the
        verdicts are computed from (``from_evidence`` recomputes them without training or scoring)."""
        self.run()

        def kept(result: dict) -> dict:
            return {"task": {key: result["task"][key] for key in ("per_item", "score") if key in result["task"]},
                    "retention": result["retention"]}

        return {"seeds": list(self.settings.seeds), "retention_sets": list(self.settings.retention_sets),
                "n_layers": self.plan.n_layers, "arms": [arm.label for arm in self.plan.arms],
                "roles": self.plan.roles, "untuned": kept(self.untuned),
                "runs": [{"arm": label, "seed": seed, **kept(run)} for (label, seed), run in self.runs.items()]}

    @classmethod
    def from_evidence(cls, name: str, evidence: dict, thresholds: dict) -> LoraStudy:
        """A study whose runs are read from a report's evidence, to give its verdicts under ``thresholds``."""
        settings = StoredSettings(tuple(evidence["seeds"]), tuple(evidence["retention_sets"]))
        arms = tuple(StoredArm(label) for label in evidence["arms"])
        plan = Plan(arms, {role: list(labels) for role, labels in evidence["roles"].items()}, evidence["n_layers"])
        runs = {(run["arm"], run["seed"]): run for run in evidence["runs"]}
        return cls(name, None, thresholds, settings, plan, runs=runs, untuned=evidence["untuned"])

    def section(self) -> dict:
        self.run()
        summary = self.summary()
        return {
            "settings": {**self.settings.training_key(), "seeds": list(self.settings.seeds)},
            "thresholds": {k: self.thresholds[k] for k in ("C4", "C8", "block_finder", "bootstrap")},
            "arms": self.table().to_dict(orient="records"),
            "summary": summary.reset_index(names="arm").to_dict(orient="records"),
            "untuned": {k: v for k, v in self.untuned.items() if k != "likelihood_per_item"},
            "roles": self.plan.roles,
            "block_finder": self.finder_rank(),
            "power": self.power(),
            "verdicts": {key: verdict.to_dict() for key, verdict in sorted(self.verdicts.items())},
            "not_given": dict(self.skipped),
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class StoredSettings:
    """What the verdicts read of a study's settings, when its runs come from a report."""

    seeds: tuple[int, ...]
    retention_sets: tuple[str, ...]


@dataclass(frozen=True)
class StoredArm:
    label: str


def _edges(count: int) -> tuple[str, str]:
    return "1" + "0" * (count - 1), "0" * (count - 1) + "1"


def study_pair(spec: models.ModelSpec, pair_profile: pd.DataFrame | None, thresholds: dict, device: str = "auto",
               dtype: str | None = None, segment_counts: list[int] | None = None, masks: list[str] | None = None,
               overrides: dict | None = None, progress: bool = True, jobs_settings=None) -> LoraStudy:
    """Plan the study of a pair (the block finder reads ``pair_profile``); runs happen on first use.

    With ``masks``, only those arms are planned; ``overrides`` replace tuning settings (seeds, steps...).
    """
    resolved = models.resolve_pair(spec, progress=progress)
    settings = lora_runs.TuneSettings.from_thresholds(thresholds, dtype=dtype or spec.dtype)
    settings = dataclasses.replace(settings, **(overrides or {})).resolved()
    n_layers = models.load_config(resolved.base).num_hidden_layers
    proposal = None
    if pair_profile is not None and not masks:
        proposal = block_finder.propose_mask(pair_profile, thresholds["C4"]["segment_count"],
                                             thresholds["block_finder"]["stable_share"])
    if masks:
        plan = plan_masks(masks, n_layers, settings)
    else:
        plan = plan_arms(n_layers, thresholds, settings, proposal.mask if proposal else None, segment_counts)
    return LoraStudy(spec.name, resolved.base, thresholds, settings, plan, proposal, device,
                     jobs_settings=jobs_settings)
