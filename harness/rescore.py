"""Verdicts again from a stored report: the same measurements, other thresholds, no model loaded.

A report of verdicts keeps, per pair, its tables (the point values) and its
evidence: the resampled series behind every interval, the directional
differences, the swap scores per item and the LoRA runs' per-item scores and
per-text retention. Every verdict is recomputed from these through the same
predicates as a measured pair, with the thresholds of the report itself or of a
claims config the user names (users change thresholds, not GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pandas as pd

from harness import config, verification
from harness.errors import BadInputError
from harness.lora import study as lora_study
from harness.output import reports
from harness.verdicts import bootstrap, claims, directional, regression


@dataclass
class Rescored:
    """One pair's verdicts as stored and as recomputed."""

    name: str
    stored: dict[str, dict]
    verdicts: dict[str, claims.Verdict] = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        return [
            key for key, verdict in self.verdicts.items() if verdict.outcome != self.stored.get(key, {}).get("outcome")
        ]


def thresholds_of(name: str, section: dict, claims_config: dict | None) -> dict:
    """The thresholds the report's verdicts were given under (with a claims config: that config's)."""
    thresholds = config.thresholds_for(name, claims_config)
    if claims_config is None:
        for stored in (section.get("thresholds"), section.get("lora", {}).get("thresholds")):
            thresholds.update(stored or {})
    return thresholds


def _profile_of(section: dict) -> SimpleNamespace:
    return SimpleNamespace(**{name: reports.table(section, name) for name in ("base", "sft", "pair")})


def rescore_pair(name: str, section: dict, evidence: dict, thresholds: dict) -> Rescored:
    """Every verdict of one pair's section, recomputed from its tables and evidence under ``thresholds``."""
    result = Rescored(name, section.get("verdicts", {}))
    keys = sorted(result.stored)
    confidence = thresholds["bootstrap"]["confidence"]
    per_layer = [key for key in keys if key in bootstrap.NEEDS or directional.is_directional(key)]
    if per_layer:
        if "tables" not in section or "resamples" not in evidence:
            raise BadInputError(f"the report keeps no tables or resamples of {name}: it cannot be rescored")
        if evidence.get("method") != bootstrap.Resampler.method:
            raise BadInputError(
                f"the report of {name} keeps {evidence.get('method') or 'Bayesian-bootstrap'} resamples of its "
                f"probe samples, not the {bootstrap.Resampler.method} replicates this harness decides on: "
                "run the claims again to rescore them"
            )
        plug_in = bootstrap.bundle_of(_profile_of(section))
        estimates = {
            key: pd.Series(values, index=evidence["layers"], dtype=float)
            for key, values in evidence["estimates"].items()
        }
        bundle = {**plug_in, **estimates}
        resampled = bootstrap.stored_bundles(evidence["layers"], evidence["resamples"])
    for key in per_layer:
        if directional.is_directional(key):
            stored = evidence["directional"][key]
            again = None if stored["resampled"] is None else stored["resampled"]
            result.verdicts[key] = directional.evaluate(
                directional.HYPOTHESES[key], stored["delta"], thresholds, again, stored["note"], stored.get("base")
            )
        else:
            needed = resampled if bootstrap.NEEDS[key] else []
            result.verdicts[key] = claims.evaluate(
                key, bundle, thresholds, needed, confidence, evidence["note"] if needed else "", plug_in=plug_in
            )
            result.verdicts[key].estimator = result.stored.get(key, {}).get("estimator", "")
    for key in keys:
        if key.startswith("C3:"):
            _, direction, count = key.split(":")
            swaps = evidence["swaps"][direction]
            result.verdicts[key] = verification.swap_verdict(
                _with_int_keys(swaps), int(count.removeprefix("M")), thresholds
            )
    lora_keys = [key for key in keys if key.startswith(("C4", "C8"))]
    if lora_keys:
        study = lora_study.LoraStudy.from_evidence(name, evidence["lora"], thresholds)
        for key in lora_keys:
            result.verdicts[key] = study.verdict(key)
    unknown = sorted(set(keys) - set(result.verdicts))
    if unknown:
        raise BadInputError(f"{name}: this harness cannot rescore the verdicts {unknown}")
    return result


def _with_int_keys(swaps: dict) -> dict:
    """A swap result read back from JSON: its values of M are numbers again."""
    return {**swaps, **{part: {int(m): rows for m, rows in swaps[part].items()} for part in ("segments", "items")}}


def rescore_report(report: dict, claims_config: dict | None = None, source: str = "the report") -> dict[str, Rescored]:
    """Every pair of a stored report of verdicts (``harness verify``, ``tune`` or a pytest session)."""
    if report.get("kind") == "baseline":
        raise BadInputError(
            "a baseline keeps the verdicts but not the evidence they are given from: rescore the report of the "
            "run that wrote it (the pytest session's report, or `harness verify`'s)"
        )
    if report.get("kind") not in ("claims", "lora"):
        raise BadInputError(
            f"a {report.get('kind')!r} report holds no verdicts: rescore the report of "
            "`harness verify`, `harness tune` or a pytest session"
        )
    regression.sections_of(report, source=source)  # each pair's section as the harness writes it
    evidence = report.get("evidence") or {}
    if not isinstance(evidence, dict) or not all(isinstance(kept, dict) for kept in evidence.values()):
        raise reports.ReportError(
            f"{source} is not a well-formed harness report: its evidence is not an object per pair"
        )
    missing = sorted(name for name in report["pairs"] if name not in evidence)
    if missing:
        raise BadInputError(
            f"the report keeps no evidence of {', '.join(missing)} (written by an older harness): "
            "run the claims again to rescore them"
        )
    return {
        name: rescore_pair(name, section, evidence[name], thresholds_of(name, section, claims_config))
        for name, section in sorted(report["pairs"].items())
    }


def rescored_report(report: dict, rescored: dict[str, Rescored], claims_config: dict | None, source: str) -> dict:
    """The report with every verdict (and the thresholds) replaced by the rescored ones."""
    pairs = {}
    for name, section in report["pairs"].items():
        thresholds = thresholds_of(name, section, claims_config)
        verdicts = {key: verdict.to_dict() for key, verdict in sorted(rescored[name].verdicts.items())}
        pairs[name] = {**section, "thresholds": thresholds, "verdicts": verdicts}
        if "lora" in section:
            pairs[name]["lora"] = {
                **section["lora"],
                "verdicts": {key: value for key, value in verdicts.items() if key.startswith(("C4", "C8"))},
            }
    return {**report, "environment": reports.environment(), "pairs": pairs, "rescored_from": source}
