"""Comparing a measured pair with its stored baseline, within per-column tolerances.

Modelled on pytest-regressions' ``dataframe_regression`` (per-column atol/rtol,
one explicit regenerate flag) but kept in the library: baselines are one
versioned JSON per model that also records verdicts and provenance, and the
same comparison serves ``harness diff`` outside pytest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import config
from harness.output import reports


@dataclass(frozen=True)
class Difference:
    where: str  # "pair table", "verdict C1", ...
    column: str
    layer: int | None
    baseline: object
    current: object
    allowed: str

    def row(self) -> str:
        layer = "" if self.layer is None else str(self.layer)
        return (
            f"{self.where:<16} {self.column:<28} {layer:>5} {_fmt(self.baseline):>14} "
            f"{_fmt(self.current):>14}  {self.allowed}"
        )


HEADER = f"{'where':<16} {'column':<28} {'layer':>5} {'baseline':>14} {'current':>14}  allowed"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _undefined(value) -> bool:
    """No value: None, or NaN, which a report stores as null (strict JSON)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _close(baseline, current, tolerance: dict) -> bool:
    if _undefined(baseline) or _undefined(current):
        return _undefined(baseline) and _undefined(current)
    if isinstance(baseline, bool) or isinstance(current, bool):
        return baseline == current
    baseline, current = float(baseline), float(current)
    if math.isnan(baseline) or math.isnan(current):
        return math.isnan(baseline) and math.isnan(current)
    if math.isinf(baseline) or math.isinf(current):
        return baseline == current
    return abs(current - baseline) <= tolerance["atol"] + tolerance["rtol"] * abs(baseline)


def compare_tables(baseline: dict, current: dict, claims_config: dict | None = None) -> list[Difference]:
    differences = []
    for name in ("base", "sft", "pair"):
        old, new = reports.table(baseline, name), reports.table(current, name)
        for column in sorted(set(old.columns) | set(new.columns)):
            if column not in old.columns or column not in new.columns:
                differences.append(
                    Difference(
                        f"{name} table", column, None, column in old.columns, column in new.columns, "present in both"
                    )
                )
                continue
            tolerance = config.tolerance_for(column, claims_config)
            for layer in sorted(set(old.index) | set(new.index)):
                a = old[column].get(layer)
                b = new[column].get(layer)
                if not _close(a, b, tolerance):
                    differences.append(
                        Difference(
                            f"{name} table",
                            column,
                            int(layer),
                            a,
                            b,
                            f"atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g}",
                        )
                    )
    return differences


def compare_verdicts(
    baseline: dict, current: dict, claims_config: dict | None = None, presence: bool = False
) -> list[Difference]:
    """Verdicts of the claims both sections evaluated; with ``presence``, a verdict in only one is a
    difference too (comparing whole reports), otherwise it is not compared (one test checks one verdict)."""
    differences = []
    old_verdicts, new_verdicts = baseline.get("verdicts", {}), current.get("verdicts", {})
    if presence:
        differences += [
            Difference(
                f"verdict {claim}", "present", None, claim in old_verdicts, claim in new_verdicts, "present in both"
            )
            for claim in sorted(set(old_verdicts) ^ set(new_verdicts))
        ]
    for claim in sorted(set(old_verdicts) & set(new_verdicts)):
        old, new = old_verdicts[claim], new_verdicts[claim]
        old_outcome, new_outcome = _outcome(old), _outcome(new)
        if old_outcome != new_outcome:
            differences.append(Difference(f"verdict {claim}", "outcome", None, old_outcome, new_outcome, "equal"))
        value_tolerance = config.tolerance_for("value", claims_config)
        if not _close(old["value"], new["value"], value_tolerance):
            differences.append(
                Difference(
                    f"verdict {claim}",
                    old["statistic"],
                    None,
                    old["value"],
                    new["value"],
                    f"atol {value_tolerance['atol']:g}, rtol {value_tolerance['rtol']:g}",
                )
            )
        for index, bound in enumerate(("ci_low", "ci_high")):
            tolerance = config.tolerance_for(bound, claims_config)
            a = old["ci"][index] if old.get("ci") else None
            b = new["ci"][index] if new.get("ci") else None
            if not _close(a, b, tolerance):
                differences.append(
                    Difference(
                        f"verdict {claim}", bound, None, a, b, f"atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g}"
                    )
                )
    return differences


def _outcome(verdict: dict) -> str:
    """A stored verdict's outcome; reports written before three-way outcomes only say whether it held."""
    if "outcome" in verdict:
        return verdict["outcome"]
    return "holds" if verdict["holds"] else "refuted"


SECTION_PARTS = ("tables", "swaps", "lora", "downstream", "scores")  # what a pair's section can hold
MEASUREMENT = ("base_weights", "sft_weights")  # what was measured: a change is drift, not environment


def compare_sections(
    baseline: dict,
    current: dict,
    claims_config: dict | None = None,
    tables: bool = True,
    verdicts: bool = True,
    whole: bool = False,
) -> list[Difference]:
    """Differences of ``current`` from ``baseline`` within tolerances. ``whole``: both are whole sections
    (``harness diff``), so a part, a verdict or a layer present in only one is a difference too, and so are
    other weights or profile options."""
    differences = _probe_difference(baseline, current)
    if whole:
        differences += [
            Difference("section", part, None, part in baseline, part in current, "present in both")
            for part in SECTION_PARTS
            if (part in baseline) != (part in current)
        ]
        differences += _measured_differences(baseline, current)
        differences += _option_differences(baseline, current)
        if "scores" in baseline and "scores" in current:
            differences += _compare_leaves(
                "scores", baseline["scores"], current["scores"], config.tolerance_for("value", claims_config)
            )
    if tables and (not whole or ("tables" in baseline and "tables" in current)):
        differences += compare_tables(baseline, current, claims_config)
    if verdicts:
        differences += compare_verdicts(baseline, current, claims_config, presence=whole)
    return differences


SAME_KIND = {"baseline": "claims"}  # a baseline is a claims report's section, kept for comparison


def same_kind(first: str | None, second: str | None) -> bool:
    """Whether reports of these kinds are compared whole (``compare_sections``) rather than on what both hold
    (``compare_held``): a baseline counts as a claims report."""
    return SAME_KIND.get(first or "", first) == SAME_KIND.get(second or "", second)


def compare_held(
    baseline: dict, current: dict, claims_config: dict | None = None
) -> tuple[list[Difference], list[str]]:
    """Differences of two sections of reports of different kinds (a profile or a LoRA study against a run or a
    stored baseline), over what both hold: the parts both measured (the profile's probe and options with its
    tables), the weights both record and the verdicts both give; and what was not compared, part by part.
    Nothing in common is an error: no comparison could say "no drift"."""
    held = [part for part in SECTION_PARTS if part in baseline and part in current]
    old_verdicts, new_verdicts = baseline.get("verdicts", {}), current.get("verdicts", {})
    if not held and not set(old_verdicts) & set(new_verdicts):
        raise reports.ReportError(
            f"the two reports hold nothing in common to compare: the first holds {_holding(baseline)}, the "
            f"second {_holding(current)}"
        )
    differences: list[Difference] = []
    if "tables" in held:
        differences += _probe_difference(baseline, current) + _option_differences(baseline, current)
        differences += compare_tables(baseline, current, claims_config)
    differences += _measured_differences(baseline, current, recorded_by_both=True)
    if "scores" in held:
        differences += _compare_leaves(
            "scores", baseline["scores"], current["scores"], config.tolerance_for("value", claims_config)
        )
    differences += compare_verdicts(baseline, current, claims_config)
    not_compared = [
        f"{part}: only in the {'first' if part in baseline else 'second'} report"
        for part in SECTION_PARTS
        if (part in baseline) != (part in current)
    ]
    for which, only in (
        ("first", set(old_verdicts) - set(new_verdicts)),
        ("second", set(new_verdicts) - set(old_verdicts)),
    ):
        if only:
            not_compared.append(f"verdicts only in the {which} report: {', '.join(sorted(only))}")
    return differences, not_compared


def _holding(section: dict) -> str:
    parts = [part for part in SECTION_PARTS if part in section]
    count = len(section.get("verdicts", {}))
    return ", ".join([*parts, *([f"{count} verdicts"] if count else [])]) or "nothing"


def _probe_difference(baseline: dict, current: dict) -> list[Difference]:
    old, new = baseline.get("probe", {}).get("digest"), current.get("probe", {}).get("digest")
    return [] if old == new else [Difference("probe data", "digest", None, old, new, "equal (same probe texts)")]


def _measured_differences(baseline: dict, current: dict, recorded_by_both: bool = False) -> list[Difference]:
    """Other weights (``MEASUREMENT``); with ``recorded_by_both``, only where both sections record them (a swap
    or LoRA section names no weights)."""
    old_pair, new_pair = baseline.get("pair", {}), current.get("pair", {})
    if not (isinstance(old_pair, dict) and isinstance(new_pair, dict)):
        return []
    return [
        Difference("measured", key, None, old_pair.get(key), new_pair.get(key), "equal")
        for key in MEASUREMENT
        if old_pair.get(key) != new_pair.get(key)
        and not (recorded_by_both and (old_pair.get(key) is None or new_pair.get(key) is None))
    ]


def _option_differences(baseline: dict, current: dict) -> list[Difference]:
    old_options, new_options = baseline.get("options", {}), current.get("options", {})
    return [
        Difference("options", key, None, old_options.get(key), new_options.get(key), "equal")
        for key in sorted(set(old_options) | set(new_options))
        if old_options.get(key) != new_options.get(key)
    ]


def _compare_leaves(where: str, old, new, tolerance: dict, path: str = "") -> list[Difference]:
    """Numbers of two nested score tables (task -> model -> metric), within ``tolerance``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(Difference(where, name, None, key in old, key in new, "present in both"))
            else:
                out += _compare_leaves(where, old[key], new[key], tolerance, name)
        return out
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if (numeric and not _close(old, new, tolerance)) or (not numeric and old != new):
        return [
            Difference(
                where,
                path,
                None,
                old,
                new,
                f"atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g}" if numeric else "equal",
            )
        ]
    return []


def environment_notes(old_report: dict, new_report: dict) -> list[str]:
    """Package and harness versions that differ between two reports: context for a drift, not a drift."""
    old_env, new_env = old_report.get("environment", {}), new_report.get("environment", {})
    notes = []
    for key in sorted(set(old_env) | set(new_env)):
        a, b = old_env.get(key), new_env.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            notes += [
                f"{key}.{name}: {a.get(name)} -> {b.get(name)}"
                for name in sorted(set(a) | set(b))
                if a.get(name) != b.get(name)
            ]
        elif a != b and key not in ("created", "time", "timestamp"):
            notes.append(f"{key}: {a} -> {b}")
    return notes


def format_differences(differences: list[Difference], limit: int = 60) -> str:
    rows = [d.row() for d in differences[:limit]]
    more = f"\n... and {len(differences) - limit} more" if len(differences) > limit else ""
    return "\n".join([HEADER, *rows]) + more


# --- baseline files ------------------------------------------------------------------------------


def baseline_path(directory: Path, pair: str, probe_set: str, build: str | None = None) -> Path:
    """Where the baseline of ``pair`` on ``probe_set`` is stored. A pair the harness builds here (the tiny pairs)
    has one baseline per build (``build``, see ``build_of``): trained on another CPU or kernel setting, it is
    another model, whose numbers only a baseline of the same weights can pin."""
    name = f"{probe_set}.json" if build is None else f"{probe_set}.build-{build}.json"
    return Path(directory) / pair / name


def build_of(pair: dict) -> str:
    """A built pair's weights as a file-name tag: the first 8 hex digits of the base's and of the SFT's hash
    (a report's ``pair`` block, or any mapping with ``base_weights`` and ``sft_weights``)."""

    def short(fingerprint) -> str:
        return str(fingerprint).rsplit(":", 1)[-1][:8]

    return f"{short(pair['base_weights'])}-{short(pair['sft_weights'])}"


def stored_builds(directory: Path, pair: str, probe_set: str) -> list[str]:
    """The builds of ``pair`` whose baselines are stored under ``directory``."""
    prefix = f"{probe_set}.build-"
    return sorted(path.name[len(prefix) : -len(".json")] for path in (Path(directory) / pair).glob(f"{prefix}*.json"))


def missing_build_note(directory: Path, pair: str, probe_set: str, build: str | None) -> str | None:
    """Why a built pair's ``build`` has nothing to compare with under ``directory`` (None when its baseline is
    stored, or when ``build`` is None: a hub or folder pair, whose one baseline is always compared)."""
    if build is None or baseline_path(directory, pair, probe_set, build).is_file():
        return None
    return other_build_note(pair, build, stored_builds(directory, pair, probe_set))


def other_build_note(pair: str, build: str, stored: list[str]) -> str:
    """Why a built pair's regression checks are not run on this machine's build, and what the user can do."""
    known = ", ".join(stored) if stored else "none"
    return (
        f"no baseline of this build of {pair} (weights {build}; stored builds: {known}): a pair trained on "
        "another CPU or kernel setting is another model, so its numbers are compared only with a baseline of "
        "the same weights. The metrics, resampling and verdicts are pinned on every machine by "
        f"tests/test_pinned_numerics.py. To pin this build, run `pytest suites -m {pair} --tune {pair} "
        "--update-baselines` and commit the new file (or keep it in your own --baselines-dir)"
    )


def baseline_refusal(name: str, section: dict, failed: int, interrupted: bool, tuned: bool) -> str | None:
    """Why the measured ``section`` of pair ``name`` must not become its baseline (None when it may).

    A baseline changes only on a run that measured every section of the pair (the profile tables, the layer
    swaps, and the LoRA study when the pair is tuned) and in which no test of the pair failed: an interrupted
    or failed run keeps the previous baseline.
    """
    if interrupted:
        return "the run was interrupted"
    if failed:
        return f"{failed} test{'s' if failed > 1 else ''} on {name} failed"
    wanted = ["tables", "swaps", *(["lora"] if tuned else [])]
    missing = [part for part in wanted if part not in section]
    if missing:
        return (
            f"this run did not measure its {', '.join(missing)} (run every suite on {name}"
            + (f" with --tune {name}" if "lora" in missing else "")
            + ")"
        )
    directions = ("base_with_sft_block", "sft_with_base_block")
    partial = [direction for direction in directions if direction not in section["swaps"]]
    if partial:
        return f"this run did not measure the swaps {', '.join(partial)} (run every C3 test on {name})"
    return None


def other_source(baseline: dict, pair: dict) -> str | None:
    """How the stored ``baseline`` was measured on something else than ``pair`` (a report's ``pair`` block:
    name and weight fingerprints), or None. A drift against another pair's or other weights' baseline says
    nothing about the harness: the failure must name it."""
    stored = baseline.get("pair", {})
    if stored.get("name") != pair.get("name"):
        return f"the baseline is of the pair {stored.get('name')!r}, not {pair.get('name')!r}"
    changed = [side for side in ("base", "sft") if stored.get(f"{side}_weights") != pair.get(f"{side}_weights")]
    if changed:
        return "the baseline was measured on other weights: " + "; ".join(
            f"{side} {stored.get(side + '_weights')} then, {pair.get(side + '_weights')} now" for side in changed
        )
    return None


def write_baseline(path: Path, section: dict) -> Path:
    return reports.write_report(path, reports.new_report("baseline", **section))


def load_baseline(path: Path) -> dict:
    """A stored baseline; missing, corrupt or older-schema files are a clear error, never skipped."""
    if not Path(path).is_file():
        raise reports.ReportError(
            f"no baseline at {path}: create it with --update-baselines (and review it before committing)"
        )
    return check_section(reports.load_report(path), str(path))


def sections_of(report: dict, pair: str | None = None, source: str = "the report") -> dict[str, dict]:
    """The per-pair sections of any report the harness writes: claims and LoRA reports (one section per
    pair), profile reports and baselines (one pair), and evaluation reports (scores of one pair). A section
    that is not shaped as the harness writes it is a clear error (``check_section``)."""
    kind = report.get("kind")
    sections: Any
    named = report.get("pair")
    if kind in ("baseline", "profile"):
        if not isinstance(named, dict) or not isinstance(named.get("name"), str):
            raise reports.ReportError(f"{source} is not a well-formed {kind} report (no pair name); {_REGENERATE}")
        sections = {named["name"]: report}
    elif kind == "evaluate":
        if not isinstance(named, str) or "scores" not in report:
            raise reports.ReportError(f"{source} is not a well-formed evaluation (no pair or scores); {_REGENERATE}")
        sections = {named: {"scores": report["scores"]}}
    else:
        sections = report.get("pairs")
    if not isinstance(sections, dict):
        raise reports.ReportError(f"not a report the harness writes (kind {kind!r}, no pair sections)")
    for name, section in sections.items():
        check_section(section, f"{source} (pair {name})")
    if pair is not None:
        if pair not in sections:
            raise reports.ReportError(f"report has no pair {pair!r}; it has {sorted(sections)}")
        return {pair: sections[pair]}
    return sections


_REGENERATE = "restore it or regenerate it with this version of the harness"
OBJECT_PARTS = ("pair", "probe", "options", "tables", "verdicts")  # what a comparison reads as objects


def check_section(section, source: str) -> dict:
    """``section`` itself when it is shaped as the harness writes a pair's section, as far as a comparison
    reads it (its tables, verdicts, probe, pair and options); otherwise a clear error naming ``source``."""
    problem = _section_problem(section)
    if problem:
        raise reports.ReportError(f"{source} is not a well-formed harness report: {problem}; {_REGENERATE}")
    return section


def _section_problem(section) -> str | None:
    if not isinstance(section, dict):
        return f"a pair's section is a {type(section).__name__}, not an object"
    for part in OBJECT_PARTS:
        if part in section and not isinstance(section[part], dict):
            return f"its {part!r} is a {type(section[part]).__name__}, not an object"
    for name, payload in section.get("tables", {}).items():
        problem = _table_problem(payload)
        if problem:
            return f"its table {name!r} {problem}"
    for claim, verdict in section.get("verdicts", {}).items():
        problem = _verdict_problem(verdict)
        if problem:
            return f"its verdict {claim!r} {problem}"
    return None


def _number_or_none(value) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _table_problem(payload) -> str | None:
    parts = ("columns", "index", "data")
    if not isinstance(payload, dict) or not all(isinstance(payload.get(part), list) for part in parts):
        return "lacks its columns, index and data lists"
    columns, index, data = (payload[part] for part in parts)
    if len(data) != len(index) or any(not isinstance(row, list) or len(row) != len(columns) for row in data):
        return f"has rows that do not match its {len(index)} layers and {len(columns)} columns"
    if not all(_number_or_none(value) for row in data for value in row):
        return "holds a value that is not a number"
    return None


def _verdict_problem(verdict) -> str | None:
    if not isinstance(verdict, dict):
        return f"is a {type(verdict).__name__}, not an object"
    if not isinstance(verdict.get("outcome"), str) and not isinstance(verdict.get("holds"), bool):
        return "has no outcome"
    if not isinstance(verdict.get("statistic"), str) or "value" not in verdict or not _number_or_none(verdict["value"]):
        return "lacks its statistic or its numeric value"
    interval = verdict.get("ci")
    if interval is not None and not (
        isinstance(interval, list) and len(interval) == 2 and all(map(_number_or_none, interval))
    ):
        return "has an interval that is not two numbers"
    return None
