"""docs/controls.md, written from the planted controls' own descriptions: the catalogue is the one place that
says what each control plants and which answers it must give (``python -m harness.plants.controls_doc``)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.plants.catalogue import CONTROLS, LADDERS

DOCUMENT = Path("docs") / "controls.md"
HEADER = """# Planted controls

<!-- Written by `python -m harness.plants.controls_doc` from the catalogue in harness/plants/catalogue.py;
tests/test_controls_doc.py fails when it is out of date. -->

A planted control is a base/SFT pair built from the tiny pair with a known answer: a claim it must make
hold, or fail. Every control goes through the same engine as a real pair (`pytest suites -m controls`,
part of `make test`). A control that *isolates* a condition must fail on that condition alone; a claim its
construction does not determine has no answer, and its test is skipped with the reason.
"""


def _answers(expected: dict[str, bool]) -> str:
    holds = [claim for claim, answer in expected.items() if answer]
    fails = [claim for claim, answer in expected.items() if not answer]
    parts = ([f"holds: {', '.join(holds)}"] if holds else []) + ([f"fails: {', '.join(fails)}"] if fails else [])
    return "; ".join(parts) or "none"


def _grouped(reasons: dict[str, str]) -> str:
    """Claims that share a reason, named together: "C1, C2 (why)"."""
    by_reason: dict[str, list[str]] = {}
    for claim, why in reasons.items():
        by_reason.setdefault(_cell(why), []).append(claim)
    return "; ".join(f"{', '.join(claims)} ({why})" for why, claims in by_reason.items())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown() -> str:
    lines = [
        HEADER,
        "## Controls",
        "",
        "| control | what it plants | must | isolates | no answer for |",
        "|---|---|---|---|---|",
    ]
    for name, control in CONTROLS.items():
        if control.ladder is not None:
            continue
        isolates = "; ".join(f"{claim}: {', '.join(conditions)}" for claim, conditions in control.isolates.items())
        unanswered = _grouped(control.unanswered)
        reverse = f" (`{control.reverse_of}` run backwards)" if control.reverse_of else ""
        lines.append(
            f"| `{name}` | {_cell(control.description)}{reverse} | {_answers(control.expected)} | "
            f"{isolates or '-'} | {unanswered or '-'} |"
        )
    lines += [
        "",
        "## Dose-response ladders",
        "",
        "Each rung is a pair; a larger dose never gets a weaker verdict.",
        "",
        "| ladder | what it plants | doses | refuted up to / holds from | either way below its holding dose |",
        "|---|---|---|---|---|",
    ]
    for name, ladder in LADDERS.items():
        answers = "; ".join(
            f"{claim}: {'-' if low is None else f'≤ {low:g}'} / ≥ {high:g}"
            for claim, (low, high) in ladder.answers.items()
        )
        either = _grouped(ladder.either_way)
        doses = ", ".join(f"{dose:g}" for dose in ladder.doses)
        lines.append(f"| `{name}` | {_cell(ladder.description)} | {doses} | {answers} | {either or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    target = Path((argv or sys.argv[1:] or [str(DOCUMENT)])[0])
    target.write_text(markdown())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
