"""Planted LoRA studies whose answer is known: the controls of the C4 and C8 suites.

Training real arms to a known outcome is not possible, so a planted study
plants the *results*: every arm of a 10-layer plan gets, per seed, per-item task
outcomes drawn with a planted success rate, and per-text negative
log-likelihoods drawn around a planted perplexity. The verdicts then go through
the same averaging over seeds and the same paired bootstrap as a trained study.

- ``planted_mid_block``: middle masks score best, the mid-block beats random
  layer sets, and the best middle arm stays closest to the base perplexity.
  C4, C4 M=5, the referee's control and C8 must hold.
- ``planted_full_depth``: full-depth LoRA and random layer sets score best, and
  full LoRA stays closest to the base. C4, the control and C8 must fail; the
  single segments still peak in the middle, so C4 M=5 must hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness import lora_runs, lora_study

ITEMS, TEXTS, N_LAYERS = 400, 40, 10


@dataclass(frozen=True)
class LoraControl:
    name: str
    success: dict[str, float]  # arm label -> planted task success rate
    perplexity: dict[str, float]  # arm label (and "base") -> planted retention perplexity
    expected: dict[str, bool]
    description: str


MID_WINS = {"10000": 0.15, "01000": 0.45, "00100": 0.55, "00010": 0.40, "00001": 0.12, "11111": 0.30,
            "01110": 0.50, "01100": 0.47, "00110": 0.48, "random1": 0.25, "random2": 0.28, "random3": 0.30}
MID_CLOSE = {"base": 14.5, "10000": 14.7, "01000": 14.55, "00100": 14.56, "00010": 14.6, "00001": 14.9,
             "11111": 15.2, "01110": 14.58, "01100": 14.59, "00110": 14.57, "random1": 14.9, "random2": 15.0,
             "random3": 14.8}

LORA_CONTROLS: dict[str, LoraControl] = {control.name: control for control in (
    LoraControl("planted_mid_block", MID_WINS, MID_CLOSE,
                {"C4": True, "C4:M5": True, "C4-control": True, "C8": True},
                "middle masks score best and forget least, at the same budget"),
    LoraControl("planted_full_depth", {**MID_WINS, "11111": 0.70, "random1": 0.60, "random2": 0.62,
                                       "random3": 0.61},
                {**MID_CLOSE, "11111": 14.51},
                {"C4": False, "C4:M5": True, "C4-control": False, "C8": False},
                "full-depth LoRA and random layers score best, and full LoRA forgets least"),
)}


def planted_study(control: LoraControl, thresholds: dict, seeds: tuple[int, ...] = (0, 1, 2),
                  seed: int = 0) -> lora_study.LoraStudy:
    """A study of a 10-layer model whose runs are drawn from the control's planted rates."""
    settings = lora_runs.TuneSettings(task="gsm8k_local", seeds=seeds, retention_sets=("wikitext-local",))
    plan = lora_study.plan_arms(N_LAYERS, thresholds, settings, segment_counts=[5])
    missing = sorted({arm.label for arm in plan.arms} - set(control.success))
    if missing:
        raise KeyError(f"control {control.name} plants no result for the arms {missing}")
    rng = np.random.default_rng(seed)

    def retention(perplexity: float) -> dict:
        tokens = rng.integers(50, 200, TEXTS)
        nll = tokens * math.log(perplexity) * rng.uniform(0.999, 1.001, TEXTS)
        return {"wikitext-local": {"perplexity": perplexity,
                                   "per_text": {"nll": nll.tolist(), "tokens": tokens.tolist()}}}

    def run(label: str) -> dict:
        per_item = (rng.random(ITEMS) < control.success[label]).astype(float).tolist()
        return {"task": {"score": float(np.mean(per_item)), "stderr": float(np.std(per_item) / math.sqrt(ITEMS)),
                         "per_item": per_item},
                "likelihood": {"score": math.nan}, "retention": retention(control.perplexity[label]),
                "final_loss": math.nan, "trainable_parameters": plan.arms[0].full_budget,
                "seconds": {"train": 0.0, "score": 0.0}}

    study = lora_study.LoraStudy(control.name, None, thresholds, settings, plan)
    study.untuned = {"task": {"score": 0.0, "stderr": 0.0}, "likelihood": {"score": math.nan},
                     "retention": retention(control.perplexity["base"])}
    study.runs = {(arm.label, s): run(arm.label) for arm in plan.arms for s in seeds}
    return study
