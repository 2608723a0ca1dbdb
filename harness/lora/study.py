"""The mid-block LoRA study of one pair (§4.4, App. A-B): its arms run once per session (each run cached
on disk), with their verdicts and report section.

Which arms are trained is the plan's (``harness.lora.plan``); how one arm is trained and scored is
``harness.lora.runs``'; how the scores become verdicts is ``harness.lora.judge``'s.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import cache
from harness.errors import BadInputError
from harness.lora import block_finder, judge
from harness.lora import runs as lora_runs
from harness.lora.plan import Plan, plan_arms, plan_masks, verdict_keys
from harness.sources import models
from harness.verdicts import claims


class StudyNotRunError(BadInputError):
    """A LoRA study read before it ran."""


class VerdictUnavailableError(BadInputError, LookupError):
    """A LoRA verdict this pair cannot give (too few layers for the masks, a study not run)."""

    def __str__(self) -> str:
        return str(self.args[0])


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
            raise BadInputError(f"shard {index}/{count}: the index must lie between 1 and {count}")
        mine = self.jobs()[index - 1 :: count]
        for arm, seed in tqdm(mine, desc=f"{self.name}: LoRA arms, shard {index}/{count}", disable=not progress):
            lora_runs.run_arm(self.base, arm, seed, self.settings, self.device, progress=progress)
        return len(mine)

    def run_shared(self, progress: bool = True) -> int:
        """Train and score the runs not in the cache, sharing them with other processes that run this study
        on the same cache: a run another process is training is passed over, then waited for at the end (and
        trained here if that process died). Returns how many runs this process trained."""
        from tqdm.auto import tqdm

        def missing():
            return [
                (arm, seed)
                for arm, seed in self.jobs()
                if lora_runs.cached_result(self.base, arm, seed, self.settings) is None
            ]

        trained = 0
        for arm, seed in tqdm(missing(), desc=f"{self.name}: LoRA arms, shared", disable=not progress):
            if cache.is_being_built(lora_runs.run_folder(self.base, arm, seed, self.settings)):
                continue
            if lora_runs.cached_result(self.base, arm, seed, self.settings) is None:
                lora_runs.run_arm(self.base, arm, seed, self.settings, self.device, progress=progress)
                trained += 1
        for arm, seed in missing():  # held by another process: its result, once it is written
            lora_runs.run_arm(self.base, arm, seed, self.settings, self.device, progress=progress)
        return trained

    def run(self, progress: bool = True) -> None:
        """Train and score every arm with every seed (cached runs are read back). With ``jobs`` other than
        serial, the runs not in the cache are first trained as submitit jobs (``arm_jobs``)."""
        from tqdm.auto import tqdm

        if self.has_run:
            return
        started = time.perf_counter()
        if self.jobs_settings is not None and self.jobs_settings.executor != "serial":
            from harness.lora import arm_jobs

            arm_jobs.run_study_jobs(self, self.jobs_settings, progress)
        self.untuned = lora_runs.base_scores(self.base, self.settings, self.device)
        jobs = self.jobs()
        for arm, seed in tqdm(jobs, desc=f"{self.name}: LoRA arms", disable=not progress):
            self.runs[(arm.label, seed)] = lora_runs.run_arm(
                self.base, arm, seed, self.settings, self.device, progress=progress
            )
        self.seconds += time.perf_counter() - started

    @property
    def has_run(self) -> bool:
        return self.untuned is not None and len(self.runs) == len(self.plan.arms) * len(self.settings.seeds)

    def _require_run(self) -> None:
        """Reading a study never trains it: only ``run`` does."""
        if not self.has_run:
            raise StudyNotRunError(
                f"the LoRA study of {self.name} has not run: train it with `harness tune --pair "
                f"{self.name}` (or `--tune {self.name}` under pytest), or call its run()"
            )

    # --- scores ------------------------------------------------------------------------------

    def scores(self) -> pd.Series:
        """Mean task score over seeds, per arm label."""
        self._require_run()
        return pd.Series({arm.label: float(judge.items(self, arm.label).mean()) for arm in self.plan.arms})

    def untuned_scores(self) -> dict:
        self._require_run()
        return self.untuned

    # --- verdicts (``harness.lora.judge``) -----------------------------------------------------

    def verdict_keys(self) -> list[str]:
        return verdict_keys(self.plan)

    def unavailable(self, key: str) -> str | None:
        """Why a verdict cannot be given with this study's plan (None when it can)."""
        return judge.unavailable(self, key)

    def all_verdicts(self) -> dict[str, claims.Verdict]:
        """Every verdict this study's plan allows; the others are listed in ``skipped`` with the reason."""
        for key in self.verdict_keys():
            reason = self.unavailable(key)
            if reason:
                self.skipped[key] = reason
            else:
                self.verdict(key)
        return self.verdicts

    def verdict(self, key: str) -> claims.Verdict:
        if key in self.verdicts:
            return self.verdicts[key]
        reason = self.unavailable(key)
        if reason:
            raise VerdictUnavailableError(reason)
        self._require_run()
        self.verdicts[key] = judge.verdict(self, key)
        return self.verdicts[key]

    def minimum_detectable_difference(self, first: str, second: str, power: float = 0.8) -> dict:
        """The smallest true difference in task score between two arms this study would detect
        (``judge.minimum_detectable_difference``)."""
        self._require_run()
        return judge.minimum_detectable_difference(self, first, second, power)

    # --- report ------------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """One row per arm and seed: where it adapts, what it costs, how it scores."""
        self._require_run()
        rows = []
        roles_of = {}
        for role, labels in self.plan.roles.items():
            for label in labels:
                roles_of.setdefault(label, []).append(role)
        for arm in self.plan.arms:
            for seed in self.settings.seeds:
                run = self.runs[(arm.label, seed)]
                row = {
                    "arm": arm.label,
                    "roles": ",".join(roles_of.get(arm.label, [])),
                    "layers": " ".join(map(str, arm.layers)),
                    "rank": arm.rank,
                    "alpha": arm.alpha,
                    "trainable": run["trainable_parameters"],
                    "budget_error": round(arm.budget_error, 4),
                    "seed": seed,
                    "score": run["task"]["score"],
                    "stderr": run["task"]["stderr"],
                    "answer_loglik": run["likelihood"]["score"],
                    "final_loss": run["final_loss"],
                    "train_s": run["seconds"]["train"],
                    "score_s": run["seconds"]["score"],
                }
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
        base_row = {
            "roles": "untuned",
            "rank": 0,
            "trainable": 0,
            "score": base["task"]["score"],
            "score_sd": np.nan,
            "stderr": base["task"]["stderr"],
            "answer_loglik": base["likelihood"]["score"],
        }
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
        return {
            **self.proposal.to_dict(),
            "arm": label,
            "rank": rank,
            "of": len(scores),
            "score": float(scores[label]),
            "best_arm": str(scores.index[0]),
            "best_score": float(scores.iloc[0]),
        }

    def evidence(self) -> dict:
        """The per-item task scores and per-text retention of every run and of the untuned base: what the
        verdicts are computed from (``from_evidence`` recomputes them without training or scoring)."""
        self._require_run()

        def kept(result: dict) -> dict:
            return {
                "task": {key: result["task"][key] for key in ("per_item", "score") if key in result["task"]},
                "retention": result["retention"],
            }

        return {
            "seeds": list(self.settings.seeds),
            "retention_sets": list(self.settings.retention_sets),
            "n_layers": self.plan.n_layers,
            "arms": [arm.label for arm in self.plan.arms],
            "roles": self.plan.roles,
            "untuned": kept(self.untuned),
            "runs": [{"arm": label, "seed": seed, **kept(run)} for (label, seed), run in self.runs.items()],
        }

    @classmethod
    def from_evidence(cls, name: str, evidence: dict, thresholds: dict) -> LoraStudy:
        """A study whose runs are read from a report's evidence, to give its verdicts under ``thresholds``."""
        settings = StoredSettings(tuple(evidence["seeds"]), tuple(evidence["retention_sets"]))
        arms = tuple(StoredArm(label) for label in evidence["arms"])
        plan = Plan(arms, {role: list(labels) for role, labels in evidence["roles"].items()}, evidence["n_layers"])
        runs = {(run["arm"], run["seed"]): run for run in evidence["runs"]}
        return cls(name, None, thresholds, settings, plan, runs=runs, untuned=evidence["untuned"])

    def section(self) -> dict:
        self._require_run()
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


def study_pair(
    spec: models.ModelSpec,
    pair_profile: pd.DataFrame | None,
    thresholds: dict,
    device: str = "auto",
    dtype: str | None = None,
    segment_counts: list[int] | None = None,
    masks: list[str] | None = None,
    overrides: dict | None = None,
    progress: bool = True,
    jobs_settings=None,
) -> LoraStudy:
    """Plan the study of a pair (the block finder reads ``pair_profile``); runs happen on first use.

    With ``masks``, only those arms are planned; ``overrides`` replace tuning settings (seeds, steps...).
    """
    resolved = models.resolve_pair(spec, progress=progress)
    settings = lora_runs.TuneSettings.from_thresholds(thresholds, dtype=dtype or spec.dtype)
    settings = dataclasses.replace(settings, **(overrides or {})).resolved()
    n_layers = models.layer_count(resolved.base)
    proposal = None
    if pair_profile is not None and not masks:
        proposal = block_finder.propose_mask(
            pair_profile, thresholds["C4"]["segment_count"], thresholds["block_finder"]["stable_share"]
        )
    if masks:
        plan = plan_masks(masks, n_layers, settings)
    else:
        plan = plan_arms(n_layers, thresholds, settings, proposal.mask if proposal else None, segment_counts)
    return LoraStudy(
        spec.name, resolved.base, thresholds, settings, plan, proposal, device, jobs_settings=jobs_settings
    )
