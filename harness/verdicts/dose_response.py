"""A claim's verdict against the planted dose of a ladder of controls.

A predicate that tells a planted effect from its absence should also say where
between them it changes its mind: refuted at doses well below its threshold,
holding well above it, inconclusive at most in between, and never refuted again
at a larger dose once it has held.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.verdicts import claims

ORDER = {claims.REFUTED: 0, claims.INCONCLUSIVE: 1, claims.HOLDS: 2}


def response(claim: str, rungs: Sequence[tuple[float, claims.Verdict, bool | None]]) -> list[dict]:
    """One row per rung (dose, its verdict, the planted answer or None): the claim's main statistic with
    its interval, threshold and outcome, by increasing dose."""
    rows = []
    for dose, verdict, expected in sorted(rungs, key=lambda rung: rung[0]):
        main = verdict.main
        low, high = main.interval if main.interval else (main.value, main.value)
        rows.append(
            {
                "claim": claim,
                "dose": float(dose),
                "statistic": main.name,
                "value": float(main.value),
                "ci_low": float(low),
                "ci_high": float(high),
                "comparison": main.comparison,
                "threshold": float(main.threshold),
                "outcome": verdict.outcome,
                "expected": None if expected is None else (claims.HOLDS if expected else claims.REFUTED),
            }
        )
    return rows


def wrong_answers(rows: Sequence[dict]) -> list[str]:
    """Rungs whose verdict is not their planted answer."""
    return [
        f"dose {row['dose']:g}: {row['claim']} is {row['outcome']}, planted {row['expected']} "
        f"({row['statistic']} = {row['value']:.4g}, interval [{row['ci_low']:.4g}, {row['ci_high']:.4g}], "
        f"threshold {row['comparison']} {row['threshold']:.4g})"
        for row in rows
        if row["expected"] is not None and row["outcome"] != row["expected"]
    ]


def reversals(rows: Sequence[dict]) -> list[str]:
    """Places where a larger dose gives a weaker verdict (holds, then inconclusive or refuted; inconclusive,
    then refuted): a dose-response runs one way."""
    found = []
    for before, after in zip(rows, rows[1:], strict=False):
        if ORDER[after["outcome"]] < ORDER[before["outcome"]]:
            found.append(
                f"{before['claim']} is {before['outcome']} at dose {before['dose']:g} but "
                f"{after['outcome']} at dose {after['dose']:g}"
            )
    return found


def table(rows: Sequence[dict]) -> str:
    """A plain-text table of one claim's response."""
    lines = [f"{'dose':>8} {'statistic':<26} {'value':>9} {'interval':>22} {'threshold':>11} {'outcome':<12} planted"]
    for row in rows:
        lines.append(
            f"{row['dose']:>8g} {row['statistic']:<26} {row['value']:>9.4g} "
            f"{'[' + format(row['ci_low'], '.4g') + ', ' + format(row['ci_high'], '.4g') + ']':>22} "
            f"{row['comparison'] + ' ' + format(row['threshold'], '.4g'):>11} {row['outcome']:<12} "
            f"{row['expected'] or '(near the threshold)'}"
        )
    return "\n".join(lines)
