"""Verifying the claims on one pair: profile, verdicts with intervals, and the report section.

Shared by the pytest plugin and ``harness verify``; nothing here imports pytest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from harness import config
from harness.errors import BadInputError
from harness.measure.profile import PairProfile, ProfileOptions, profile_pair
from harness.output import reports
from harness.sources import models
from harness.verdicts import bootstrap, claims, directional


@dataclass
class Measured:
    """One pair, measured once per session: its profile, thresholds and the verdicts computed so far."""

    name: str
    profile: PairProfile
    thresholds: dict
    resampler: bootstrap.Resampler
    verdicts: dict[str, claims.Verdict] = field(default_factory=dict)
    seconds: float = 0.0
    _bundle: dict | None = None
    _directional: dict = field(default_factory=dict)

    def verdict(self, claim: str) -> claims.Verdict:
        if claim not in self.verdicts:
            started = time.perf_counter()
            if directional.is_directional(claim):  # §3.3-3.4, per depth band, from the same captured runs
                delta, resampled, note = directional.measured_inputs(claim, self.profile, self.resampler)
                base = directional.base_levels(claim, self.profile)
                self._directional[claim] = {
                    "delta": np.asarray(delta, dtype=float).tolist(),
                    "base": np.asarray(base, dtype=float).tolist(),
                    "note": note,
                    "resampled": None if resampled is None else resampled.tolist(),
                }
                self.verdicts[claim] = directional.evaluate(
                    directional.HYPOTHESES[claim], delta, self.thresholds, resampled, note, base
                )
            else:
                kind = bootstrap.NEEDS[claim]
                if self._bundle is None:
                    self._bundle = bootstrap.bundle_of(self.profile)
                resampled = self.resampler.bundles(kind)
                self.verdicts[claim] = claims.evaluate(
                    claim,
                    self.resampler.point_bundle(self._bundle),
                    self.thresholds,
                    resampled,
                    confidence=self.thresholds["bootstrap"]["confidence"],
                    note=self.resampler.note if resampled else "",
                    plug_in=self._bundle,
                    estimator=self.resampler.estimator(kind),
                )
            self.seconds += time.perf_counter() - started
        return self.verdicts[claim]

    def evidence(self) -> dict:
        """What the verdicts were computed from beyond the tables: the resampled series and the directional
        differences, so that ``rescore`` recomputes them under other thresholds without the models."""
        return {
            "layers": self.resampler.layers,
            "note": self.resampler.note,
            "method": self.resampler.method,
            "resamples": self.resampler.stored(),
            "estimates": {name: series.tolist() for name, series in self.resampler.estimates().items()},
            "directional": dict(self._directional),
        }

    def section(self) -> dict:
        """This pair's part of a report (and the whole of a baseline)."""
        return {
            **self.profile.meta,
            "thresholds": self.thresholds,
            "verdicts": {claim: verdict.to_dict() for claim, verdict in sorted(self.verdicts.items())},
            "tables": {name: reports.table_payload(getattr(self.profile, name)) for name in ("base", "sft", "pair")},
            "claims_seconds": round(self.seconds, 3),
        }


def check_verifiable_samples(pooled_samples: int) -> None:
    """Refuse, before any work, fewer probe samples than the verdicts' estimators take: a profile's plug-in tables
    need two, the debiased CKA (and so every C1 interval) ``unbiased.MIN_SAMPLES``."""
    from harness.metrics.unbiased import MIN_SAMPLES

    if pooled_samples < MIN_SAMPLES:
        raise BadInputError(
            f"verifying the claims needs at least {MIN_SAMPLES} pooled probe samples (the debiased CKA of eq. 6 "
            f"and its jackknife); got {pooled_samples} (`harness profile` takes 2 or more)"
        )


def measure(
    spec: models.ModelSpec,
    options: ProfileOptions,
    device: str = "auto",
    progress: bool = True,
    claims_config: dict | None = None,
) -> Measured:
    """Resolve, profile and prepare the bootstrap of one pair (raises ModelUnavailableError when it cannot)."""
    check_verifiable_samples(options.pooled_samples)
    thresholds = config.thresholds_for(spec.name, claims_config)
    resolved = models.resolve_pair(spec, progress=progress)
    profile = profile_pair(resolved, options, device=device, progress=progress)
    sampling = thresholds["bootstrap"]
    resampler = bootstrap.Resampler(profile, sampling["jackknife_groups"], sampling["seed"])
    return Measured(spec.name, profile, thresholds, resampler)


def claims_report(sections: dict[str, dict], kind: str = "claims", evidence: dict[str, dict] | None = None) -> dict:
    """A report of verdicts: one section per pair, and (``evidence``) per pair what ``rescore`` needs to give
    the verdicts again under other thresholds without the models."""
    return reports.new_report(kind, pairs=sections, **({"evidence": evidence} if evidence else {}))


def pair_section(measured=None, swaps=None, study=None, downstream: dict | None = None) -> tuple[dict, dict]:
    """One pair's section of a claims report, and its evidence, from whatever was measured of it: the profile
    (``Measured``), the swaps (``SwapMeasured``), the LoRA study (run), the downstream scores. The command line
    and the plugin build every section with it."""
    section: dict = {"verdicts": {}}
    evidence: dict = {}
    if measured is not None:
        section, evidence = measured.section(), measured.evidence()
    if downstream is not None:
        section["downstream"] = downstream
    if swaps is not None:
        swap_section = swaps.section()
        section.setdefault("pair", swap_section["pair"])
        section["swaps"] = swap_section["swaps"]
        section["verdicts"] = {**section["verdicts"], **swap_section["verdicts"]}
        evidence.update(swaps.evidence())
    if study is not None:
        section["lora"] = study.section()
        section["verdicts"] = {**section["verdicts"], **section["lora"]["verdicts"]}
        evidence["lora"] = study.evidence()
    return section, evidence


def _reason(verdict: claims.Verdict) -> claims.Condition:
    """The condition that gave ``verdict`` its outcome (an inconclusive condition before a refuted one would not)."""
    deciding = verdict.deciding
    refuted = [c for c in deciding if c.outcome == claims.REFUTED]
    return next(iter(refuted or [c for c in deciding if c.outcome != claims.HOLDS]), verdict.main)


def verdict_table(verdicts: dict[str, claims.Verdict]) -> str:
    """A plain-text table of verdicts: claim, outcome, statistic, value, interval, threshold and its source.

    The statistic shown is the reason for the outcome: of a refuted verdict its first refuted condition, of an
    inconclusive one its first deciding condition that is not met, else its main statistic. The last line counts
    the outcomes.
    """
    width = max([5, *map(len, verdicts)])
    lines = [
        f"{'claim':<{width}} {'outcome':<12} {'statistic':<30} {'value':>10} {'interval':>22} {'threshold':>11}  source"
    ]
    for claim, verdict in sorted(verdicts.items()):
        shown = _reason(verdict)
        ci = f"[{shown.interval[0]:.4g}, {shown.interval[1]:.4g}]" if shown.interval else "exact"
        value = f"{shown.value:.4g}" if claims._finite(shown.value) else "undefined"
        origin = shown.source.split(":")[0] if shown.source else ""
        lines.append(
            f"{claim:<{width}} {verdict.outcome:<12} {shown.name:<30} {value:>10} {ci:>22} "
            f"{shown.comparison + ' ' + format(shown.threshold, '.4g'):>11}  {origin}"
        )
    counts = {outcome: sum(v.outcome == outcome for v in verdicts.values()) for outcome in claims.OUTCOMES}
    lines.append(", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    return "\n".join(lines)


@dataclass
class SwapMeasured:
    """Layer-swap scores of one pair in both directions, computed once per session."""

    name: str
    resolved: models.ResolvedPair
    thresholds: dict
    device: str = "auto"
    dtype: str = "float32"
    results: dict[str, dict] = field(default_factory=dict)
    verdicts: dict[str, claims.Verdict] = field(default_factory=dict)
    errors: dict[str, BadInputError] = field(default_factory=dict)

    def result(self, direction: str) -> dict:
        from harness.measure import swap
        from harness.sources import synthetic

        if direction in self.errors:  # a refused pair is scored once, not once per test
            raise self.errors[direction]
        if direction not in self.results:
            host, donor = swap.DIRECTIONS[direction]
            c = self.thresholds["C3"]
            records = [synthetic.gsm8k_record(0, "test", i) for i in range(c["items"])]
            try:
                self.results[direction] = swap.cached_swap_scores(
                    _checkpoint(self.resolved, host),
                    _checkpoint(self.resolved, donor),
                    records,
                    tuple(c["segment_counts"]),
                    head_from=c["head_from"],
                    dtype=self.dtype,
                    device=self.device,
                )
            except BadInputError as error:
                self.errors[direction] = error
                raise
        return self.results[direction]

    def verdict(self, direction: str, segment_count: int) -> claims.Verdict:
        key = f"C3:{direction}:M{segment_count}"
        if key not in self.verdicts:
            result = self.result(direction)
            if segment_count not in result["segments"]:
                raise BadInputError(
                    f"{self.name} has {result['n_layers']} decoder layers: C3 at M = {segment_count} "
                    f"needs at least {segment_count}, one per segment (set C3.segment_counts in a "
                    "claims config to values it can take)"
                )
            self.verdicts[key] = swap_verdict(result, segment_count, self.thresholds)
        return self.verdicts[key]

    def evidence(self) -> dict:
        """The scores the swap verdicts come from, every scored item included (for ``rescore``)."""
        return {"swaps": self.results}

    def section(self) -> dict:
        return {
            "pair": {
                "name": self.name,
                "base": self.resolved.base.describe()
                if not self.resolved.spec.is_built_locally
                else self.resolved.spec.base.describe(),
            },
            "swaps": {
                direction: {k: v for k, v in result.items() if k != "items"}
                for direction, result in sorted(self.results.items())
            },
            "verdicts": {key: verdict.to_dict() for key, verdict in sorted(self.verdicts.items())},
            "thresholds": {"C3": self.thresholds["C3"], "bootstrap": self.thresholds["bootstrap"]},
        }


def _checkpoint(resolved: models.ResolvedPair, which: str):
    return models.checkpoint_directory(resolved.base if which == "base" else resolved.sft)


def swap_verdict(result: dict, segment_count: int, thresholds: dict) -> claims.Verdict:
    """C3 on one direction and one M, against the unswapped host too, with intervals over the scored items.

    Host and hybrids score the same items, so the items are resampled jointly
    (paired); the best middle and edge segments are picked anew in every resample.
    """
    import numpy as np

    from harness import depth
    from harness.verdicts import intervals

    rows = result["segments"][segment_count]
    index = [row["segment"] for row in rows]
    items = np.asarray(result["items"][segment_count], dtype=float)  # (segments, items)
    host_items = np.asarray(result["host"]["per_item"], dtype=float)  # (items,)
    groups = depth.segment_groups(result["n_layers"], segment_count)

    sampling = thresholds["bootstrap"]
    rng = np.random.default_rng(sampling["seed"])
    weights = intervals.dirichlet_weights(items.shape[1], sampling["resamples"], rng)
    # each reweighting's means as its own product (a matrix product may sum in another order), then every
    # resample's conditions at once
    scores = np.stack([items @ w for w in weights], axis=1)  # (segments, resamples)
    host = np.array([host_items @ w for w in weights])
    resampled = claims.inverted_u_swap_resampled(dict(zip(index, scores, strict=True)), groups, thresholds, host)
    uniform = np.full(items.shape[1], 1 / items.shape[1])
    point = claims.inverted_u_swap(
        dict(zip(index, (items @ uniform).tolist(), strict=True)), groups, thresholds, host=float(host_items @ uniform)
    )
    verdict = claims.with_intervals(
        point,
        resampled,
        sampling["confidence"],
        f"normal intervals (estimate ± z standard deviations) over {sampling['resamples']} Bayesian-bootstrap "
        f"reweightings of the {items.shape[1]} scored problems (paired across hybrids and host); the best middle "
        "segment's from every middle segment's own, at confidence 1 - (1 - c)/k",
        normal=True,
    )
    verdict.claim = f"C3 M={segment_count}"
    verdict.evidence["host_score"] = result["host"]["score"]
    return verdict


def measure_swaps(
    spec: models.ModelSpec,
    device: str = "auto",
    dtype: str | None = None,
    progress: bool = True,
    claims_config: dict | None = None,
) -> SwapMeasured:
    resolved = models.resolve_pair(spec, progress=progress)
    return SwapMeasured(
        spec.name, resolved, config.thresholds_for(spec.name, claims_config), device, dtype or spec.dtype
    )


def _evaluation_options(thresholds: dict):
    from harness.measure import evaluate

    settings = thresholds["evaluation"]
    return evaluate.EvalOptions(
        limit=settings["limit"], num_fewshot=settings["num_fewshot"], max_gen_toks=settings["max_gen_toks"]
    )


def check_downstream_tasks(spec: models.ModelSpec, claims_config: dict | None) -> None:
    """Refuse, before any work, a downstream task lm-eval does not know."""
    from harness.measure import evaluate

    thresholds = config.thresholds_for(spec.name, claims_config)
    evaluate.check_tasks(list(thresholds["evaluation"]["tasks"]), _evaluation_options(thresholds))


def downstream_scores(resolved: models.ResolvedPair, thresholds: dict, dtype: str, device: str = "auto") -> dict:
    """lm-eval scores of base and SFT on the configured tasks; an unavailable task is recorded as such."""
    from harness.measure import evaluate

    settings = thresholds["evaluation"]
    options = _evaluation_options(thresholds)
    tokenizer = models.load_tokenizer(resolved.sft)
    scores: dict = {}
    for label, ref in (("base", resolved.base), ("sft", resolved.sft)):
        model = models.load_model(ref, dtype=dtype, device=device)
        for task in settings["tasks"]:
            try:
                scores.setdefault(task, {})[label] = evaluate.lm_eval_scores(model, tokenizer, [task], options)[task]
            except evaluate.TaskUnavailable as error:
                scores.setdefault(task, {})[label] = {"unavailable": str(error)}
        del model
    return scores


def downstream_table(scores: dict) -> str:
    lines = []
    for task, by_model in scores.items():
        cells = []
        for label in ("base", "sft"):
            entry = by_model.get(label, {})
            cells.append(
                f"{label} unavailable"
                if "unavailable" in entry
                else f"{label} {entry['score']:.3f} ± {entry['stderr'] or 0:.3f}"
            )
        metric = next((e["metric"] for e in by_model.values() if "metric" in e), "")
        lines.append(f"{task:<14} {metric:<26} " + "   ".join(cells))
    return "\n".join(lines)
