"""Verifying the claims on one pair: profile, verdicts with intervals, and the report section.

Shared by the pytest plugin and ``harness verify``; nothing here imports pytest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness import bootstrap, claims, config, models, reports
from harness.profile import PairProfile, ProfileOptions, profile_pair


@dataclass
class Measured:
    """One pair, measured once per session: its profile, thresholds and the verdicts computed so far."""

    name: str
    profile: PairProfile
    thresholds: dict
    resampler: bootstrap.Resampler
    verdicts: dict[str, claims.Verdict] = field(default_factory=dict)
    seconds: float = 0.0

    def verdict(self, claim: str) -> claims.Verdict:
        if claim not in self.verdicts:
            started = time.perf_counter()
            kind = bootstrap.NEEDS[claim]
            self.verdicts[claim] = claims.evaluate(
                claim, bootstrap.bundle_of(self.profile), self.thresholds, self.resampler.bundles(kind),
                confidence=self.thresholds["bootstrap"]["confidence"])
            self.seconds += time.perf_counter() - started
        return self.verdicts[claim]

    def section(self) -> dict:
        """This pair's part of a report (and the whole of a baseline)."""
        return {
            **self.profile.meta,
            "thresholds": self.thresholds,
            "verdicts": {claim: verdict.to_dict() for claim, verdict in sorted(self.verdicts.items())},
            "tables": {name: reports.table_payload(getattr(self.profile, name)) for name in ("base", "sft", "pair")},
            "claims_seconds": round(self.seconds, 3),
        }


def measure(spec: models.ModelSpec, options: ProfileOptions, device: str = "auto", progress: bool = True,
            claims_config: dict | None = None) -> Measured:
    """Resolve, profile and prepare the bootstrap of one pair (raises ModelUnavailableError when it cannot)."""
    thresholds = config.thresholds_for(spec.name, claims_config)
    resolved = models.resolve_pair(spec, progress=progress)
    profile = profile_pair(resolved, options, device=device, progress=progress)
    sampling = thresholds["bootstrap"]
    resampler = bootstrap.Resampler(profile, sampling["resamples"], sampling["spectral_resamples"], sampling["seed"])
    return Measured(spec.name, profile, thresholds, resampler)


def claims_report(sections: dict[str, dict], kind: str = "claims") -> dict:
    return {"schema_version": reports.SCHEMA_VERSION, "kind": kind, "environment": reports.environment(),
            "pairs": sections}


def verdict_table(measured: Measured) -> str:
    """A plain-text table of a pair's verdicts: claim, holds, statistic, value, CI, threshold."""
    lines = [f"{'claim':<5} {'holds':<6} {'statistic':<26} {'value':>10} {'95% CI':>22} {'threshold':>12}"]
    for claim, verdict in sorted(measured.verdicts.items()):
        main = verdict.main
        ci = f"[{verdict.ci[0]:.4g}, {verdict.ci[1]:.4g}]" if verdict.ci else "-"
        lines.append(f"{claim:<5} {'yes' if verdict.holds else 'no':<6} {verdict.statistic:<26} "
                     f"{main.value:>10.4g} {ci:>22} {main.comparison + ' ' + format(main.threshold, '.4g'):>12}")
    return "\n".join(lines)
