"""Every planted control on several independent builds of the tiny pairs, with each answer's margin.

A tiny pair trained on another CPU, or under another kernel setting, is another model: last-bit differences of
the kernels grow through training. A control whose planted answer depends on those bits proves nothing about
the engine, so each control must give its answer on every build. This module runs the controls' suites once
per build setting (a process environment that changes which kernels run: ``ATEN_CPU_CAPABILITY``, MKL's
``MKL_CBWR``), each in its own cache so that every build trains its own tiny pair, and tabulates, per control
and claim, the outcome and its margin: how far the deciding condition's interval clears its threshold.

    python -m harness.plants.across_builds --out reports/builds [--builds native avx2 default]

(``make controls-across-builds``). Reads the reports the suites write; writes ``margins.csv`` and
``margins.md`` beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

# Settings that select other kernels on one x86-64 machine, and so build other tiny pairs.
BUILD_SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
}


def _clearance(condition: dict, bound_of_interval: str) -> float:
    """Signed distance by which ``condition`` clears its threshold (positive: on the claimed side), measured at
    the interval's bound nearer the threshold (``near``: what holding needs) or farther from it (``far``:
    what refuting needs); an exact condition uses its value."""
    value, threshold, comparison = condition["value"], condition["threshold"], condition["comparison"]
    if value is None or not math.isfinite(value):
        return math.nan
    low, high = condition["interval"] if condition.get("interval") else (value, value)
    above = comparison in (">=", ">")
    bound = (low if above else high) if bound_of_interval == "near" else (high if above else low)
    return bound - threshold if above else threshold - bound


def margin(verdict: dict, expected: bool) -> tuple[float, str]:
    """How far the planted answer is reached, and by which condition.

    Expected to hold: the smallest clearance of the deciding conditions at their intervals' near bounds (every
    one must clear). Expected to be refuted: the largest distance by which a deciding condition's whole
    interval lies on the wrong side (one such condition refutes). Positive: the answer is reached with that
    much room; negative: it is missed by that much.
    """
    deciding = [c for c in verdict["conditions"] if c.get("decides", True)]
    if not deciding:
        return math.nan, ""
    if expected:
        scored = [(_clearance(c, "near"), c["name"]) for c in deciding]
        return min(scored, key=lambda pair: math.inf if math.isnan(pair[0]) else pair[0])
    scored = [(-_clearance(c, "far"), c["name"]) for c in deciding]
    return max(scored, key=lambda pair: -math.inf if math.isnan(pair[0]) else pair[0])


def _expected_for(expected: dict[str, bool], verdict_key: str) -> bool | None:
    """The planted answer for a stored verdict key (C3's keys carry their M: ``C3:direction:M5``)."""
    if verdict_key in expected:
        return expected[verdict_key]
    if verdict_key.startswith("C3:"):
        return expected.get(verdict_key.rsplit(":", 1)[0])
    return None


def control_rows(report: dict, expected: dict[str, dict[str, bool]], build: str) -> list[dict]:
    """One row per control and answered claim of one build's controls report."""
    rows = []
    for pair, section in sorted(report.get("pairs", {}).items()):
        for key, verdict in sorted(section.get("verdicts", {}).items()):
            planted = _expected_for(expected.get(pair, {}), key)
            if planted is None:
                continue
            room, condition = margin(verdict, planted)
            wanted = "holds" if planted else "refuted"
            rows.append(
                {
                    "control": pair,
                    "claim": key,
                    "planted": wanted,
                    "build": build,
                    "outcome": verdict["outcome"],
                    "correct": verdict["outcome"] == wanted,
                    "margin": room,
                    "condition": condition,
                }
            )
    return rows


def margins_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Controls × builds: per cell the outcome's mark and the margin (by the deciding condition)."""
    frame = pd.DataFrame(rows)
    frame["cell"] = [
        f"{'ok' if r.correct else 'WRONG ' + r.outcome} {r.margin:+.3g} ({r.condition})" for r in frame.itertuples()
    ]
    return frame.pivot_table(index=["control", "claim", "planted"], columns="build", values="cell", aggfunc="first")


def latest_controls_report(report_dir: Path) -> dict:
    path = Path(report_dir) / "controls" / "latest" / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"no controls report at {path}: did the controls' suites run?")
    return json.loads(path.read_text())


def run_build(name: str, out: Path, cache_root: Path, pytest_args: Sequence[str] = ()) -> int:
    """The controls' suites under build setting ``name``, in a cache of its own; returns pytest's exit code."""
    env = {
        **os.environ,
        **BUILD_SETTINGS[name],
        "HARNESS_CACHE": str(cache_root / name),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pytest.log", "w") as log:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "suites",
                "-m",
                "controls",
                "-p",
                "no:cacheprovider",
                "--report-dir",
                str(folder),
                *pytest_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode


def main(argv: Sequence[str] | None = None) -> int:
    from harness.plants.catalogue import CONTROLS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", nargs="+", default=["native", "avx2", "default"], choices=sorted(BUILD_SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("reports/builds"))
    parser.add_argument(
        "--cache", type=Path, default=None, help="one cache per build under this folder (default: OUT/cache)"
    )
    parser.add_argument("--tabulate-only", action="store_true", help="read the builds' reports, run nothing")
    args = parser.parse_args(argv)
    cache_root = args.cache or args.out / "cache"
    codes = {}
    if not args.tabulate_only:
        for name in args.builds:
            codes[name] = run_build(name, args.out, cache_root)
            print(f"{name}: pytest exit {codes[name]} (log {args.out / name / 'pytest.log'})", flush=True)
    expected = {name: control.expected for name, control in CONTROLS.items()}
    rows = [
        row for name in args.builds for row in control_rows(latest_controls_report(args.out / name), expected, name)
    ]
    table = margins_table(rows)
    pd.DataFrame(rows).to_csv(args.out / "margins.csv", index=False)
    (args.out / "margins.md").write_text(table.reset_index().to_markdown(index=False) + "\n")
    print(table.to_string())
    wrong = [row for row in rows if not row["correct"]]
    print(f"{len(rows)} answers over {len(args.builds)} builds; {len(wrong)} wrong")
    return 1 if wrong or any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
