"""The numerics of the metrics, the resampling and the verdicts, pinned on inputs that are the same everywhere.

A tiny pair trained on another CPU is another model, so its baseline pins only its own build. What must not
move on any machine is pinned here instead: every metric on fixed matrices made of exact binary fractions, and
every claim's verdict (each condition's value, interval and outcome) on seeded simulated data that goes through
the whole engine (the profile tables, the jackknife over probe samples, the predicates, the swap and LoRA judges), both
with more samples than hidden dimensions and with fewer, as in every real model. The stored numbers
(``data/pinned_numerics.json``) differ between CPUs only by the rounding of reordered sums, far inside the
tolerance below; a code change that moves a number does not. Outcomes must be equal.

Regenerate after an intended change with ``PINNED_NUMERICS_UPDATE=1 pytest tests/test_pinned_numerics.py`` and
review the diff.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import calibration, config, metrics
from harness.metrics.unbiased import debiased_linear_cka, debiased_mean_shift

STORED = Path(__file__).resolve().parent / "data" / "pinned_numerics.json"
RTOL, ATOL = 1e-7, 1e-10  # reordered sums move the last bits: measured at most 2e-16 across kernel settings
# Simulated sizes: the calibration's small default (N = 40 samples, D = 8) and a wide one with fewer samples than
# hidden dimensions (N = 24, D = 48), where every real model's profile lives.
SIZES = {"small": calibration.SMALL, "wide": calibration.SMALL.scaled(samples=24, width=48)}
FAMILY_SCENARIOS = [
    ("layers", "paper", "small"),
    ("layers", "null", "small"),
    ("directional", "null", "small"),
    ("swap", "paper", "small"),
    ("swap", "null", "small"),
    ("lora", "paper", "small"),
    ("lora", "null", "small"),
    ("layers", "paper", "wide"),
    ("directional", "null", "wide"),
]


def _dyadic(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Integers over 256 from a seeded generator: exact in float32 on every machine."""
    return torch.from_numpy(np.random.default_rng(seed).integers(-512, 512, size=shape) / 256.0).float()


def _metrics_of(x: torch.Tensor, y: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    low_rank = x[:, :8] @ x[:8, :]  # rank 8: a deficiency to count
    return {
        "linear_cka": metrics.linear_cka(x, y),
        "cosine_similarity": metrics.cosine_similarity(x, y),
        "mean_shift": metrics.mean_shift(x, y),
        "curvature": metrics.curvature(tokens),
        "effective_rank": metrics.effective_rank(x),
        "dataset_entropy": metrics.dataset_entropy(x),
        "prompt_entropy": metrics.prompt_entropy(tokens),
        "condition_number": metrics.condition_number(x),
        "spectral_norm": metrics.spectral_norm(x),
        "rank_deficiency": float(metrics.rank_deficiency(low_rank)),
        "sparsity": metrics.sparsity(x, eps=1.0),
        "debiased_cka": (cka := debiased_linear_cka(x, y)).value,
        "debiased_cka_standard_error": cka.standard_error,
        "debiased_mean_shift_squared": (shift := debiased_mean_shift(x, y)).squared,
        "debiased_mean_shift_standard_error": shift.standard_error,
    }


def metric_values() -> dict[str, float]:
    """Every metric on N > D (48 samples, 32 dimensions) and on N < D (24 samples, 64 dimensions)."""
    out = {}
    for label, (n, d) in {"tall": (48, 32), "wide": (24, 64)}.items():
        x = _dyadic(1, (n, d))
        values = _metrics_of(x, x + 0.25 * _dyadic(2, (n, d)), _dyadic(3, (20, d)))
        out.update({f"{name}/{label}": value for name, value in values.items()})
    return out


def verdict_values() -> dict[str, dict]:
    """Every claim's verdict on simulation 0 of each family and scenario (calibration's seeding), as stored."""
    thresholds = config.thresholds_for("calibration")
    out = {}
    for family, scenario, size in FAMILY_SCENARIOS:
        rng = np.random.default_rng(
            [0, list(calibration.FAMILIES).index(family), calibration._SCENARIO_CODES[scenario], 0]
        )
        verdicts = calibration._SIMULATORS[family](scenario, SIZES[size], thresholds, rng, calibration.FAMILIES[family])
        for key, verdict in verdicts.items():
            out[f"{family}/{scenario}/{size}/{key}"] = {
                "outcome": verdict.outcome,
                "conditions": {
                    c.name: {
                        "value": c.value,
                        "interval": list(c.interval) if c.interval else None,
                        "outcome": c.outcome,
                    }
                    for c in verdict.conditions
                },
            }
    return out


def measured() -> dict:
    torch.set_num_threads(1)
    return {"metrics": metric_values(), "verdicts": verdict_values()}


def _close(stored, now) -> bool:
    if stored is None or now is None:
        return stored is None and now is None
    stored, now = float(stored), float(now)
    if math.isnan(stored) or math.isnan(now):
        return math.isnan(stored) and math.isnan(now)
    if math.isinf(stored) or math.isinf(now):
        return stored == now
    return abs(now - stored) <= ATOL + RTOL * abs(stored)


def _same_condition(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None or a["outcome"] != b["outcome"] or not _close(a["value"], b["value"]):
        return False
    if a["interval"] is None or b["interval"] is None:
        return a["interval"] is None and b["interval"] is None
    return all(_close(p, q) for p, q in zip(a["interval"], b["interval"], strict=True))


def differences(stored: dict, now: dict) -> list[str]:
    out = []
    for name in sorted(set(stored["metrics"]) | set(now["metrics"])):
        a, b = stored["metrics"].get(name), now["metrics"].get(name)
        if not _close(a, b):
            out.append(f"metric {name}: {a} stored, {b} now")
    for key in sorted(set(stored["verdicts"]) | set(now["verdicts"])):
        old, new = stored["verdicts"].get(key), now["verdicts"].get(key)
        if old is None or new is None:
            out.append(f"verdict {key}: {'only now' if old is None else 'only stored'}")
            continue
        if old["outcome"] != new["outcome"]:
            out.append(f"verdict {key}: {old['outcome']} stored, {new['outcome']} now")
        for name in sorted(set(old["conditions"]) | set(new["conditions"])):
            a, b = old["conditions"].get(name), new["conditions"].get(name)
            if not _same_condition(a, b):
                out.append(f"verdict {key}, condition {name}: {a} stored, {b} now")
    return out


@pytest.fixture(scope="module")
def now() -> dict:
    return json.loads(json.dumps(measured()))  # as stored: tuples become lists, NaN stays NaN


def test_metrics_resampling_and_verdicts_match_the_pinned_numbers(now):
    if os.environ.get("PINNED_NUMERICS_UPDATE"):
        STORED.parent.mkdir(exist_ok=True)
        temporary = STORED.with_suffix(".tmp")
        temporary.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, STORED)
        pytest.skip(f"wrote {STORED}: review the diff before committing")
    stored = json.loads(STORED.read_text())
    found = differences(stored, now)
    assert not found, (
        f"{len(found)} pinned numbers moved (tolerance rtol {RTOL:g}, atol {ATOL:g}; outcomes "
        "exact):\n" + "\n".join(found[:40])
    )


def test_every_family_and_outcome_is_pinned(now):
    """The pinned set exercises every claim, and holds, refuted and inconclusive outcomes alike."""
    claims_pinned = {key.split("/")[3] for key in now["verdicts"]}
    assert {key.split("/")[2] for key in now["verdicts"]} == set(SIZES)
    assert {name.split("/")[1] for name in now["metrics"]} == {"tall", "wide"}
    assert set(calibration.CLAIM_KEYS) <= claims_pinned
    assert {v["outcome"] for v in now["verdicts"].values()} == {"holds", "refuted", "inconclusive"}


def test_a_moved_number_or_outcome_is_found(now):
    moved = json.loads(json.dumps(now))
    moved["metrics"]["linear_cka/wide"] *= 1 + 10 * RTOL
    key = next(iter(moved["verdicts"]))
    moved["verdicts"][key]["outcome"] = "other"
    found = differences(now, moved)
    assert any("linear_cka" in line for line in found) and any(key in line for line in found)
    assert differences(now, json.loads(json.dumps(now))) == []
