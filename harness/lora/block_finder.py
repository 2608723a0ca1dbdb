"""A training-free block finder: propose the LoRA segment mask from a pair's profile alone.

The paper leaves open how to find the block to tune without training every
arm. Its own account says the middle layers are where fine-tuning moves the
model least and the tail is where it moves most. The finder turns that into a
rule: per decoder layer, the *movement* is the mean of the weight change (eq. 1)
and the CKA loss 1 − CKA (eq. 6), each rescaled to [0, 1] over depth; it
proposes the segments between the first and the last 20% of depth whose mean
movement stays below ``stable_share``, or the calmest middle segment if none does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.depth import segment_groups, segments
from harness.errors import BadInputError


@dataclass(frozen=True)
class Proposal:
    mask: str
    movement: list[float]  # per decoder layer 0..L-1
    segment_movement: list[float]  # per segment
    stable: list[int]  # middle segments below the share
    fallback: bool  # no middle segment was stable: the calmest one was taken

    def to_dict(self) -> dict:
        return {
            "mask": self.mask,
            "movement": self.movement,
            "segment_movement": self.segment_movement,
            "stable_segments": self.stable,
            "fallback": self.fallback,
        }


def _rescaled(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return np.zeros_like(values) if span == 0 else (values - values.min()) / span


def layer_movement(pair: pd.DataFrame) -> np.ndarray:
    """Movement of each decoder layer: profile rows 1..L (row l is the output of decoder layer l − 1)."""
    missing = {"weight_change", "cka"} - set(pair.columns)
    if missing:
        raise BadInputError(f"the block finder needs the pair metrics {sorted(missing)}")
    rows = pair.loc[pair.index >= 1]
    change = rows["weight_change"].to_numpy(dtype=float)
    dissimilarity = 1.0 - rows["cka"].to_numpy(dtype=float)
    if not (np.isfinite(change).all() and np.isfinite(dissimilarity).all()):
        raise BadInputError("the profile has non-finite weight change or CKA; the block finder cannot use it")
    return (_rescaled(change) + _rescaled(dissimilarity)) / 2


def propose_mask(pair: pd.DataFrame, segment_count: int, stable_share: float = 0.5) -> Proposal:
    """The mask over ``segment_count`` equal segments that the profile ``pair`` suggests tuning."""
    if not 0 < stable_share <= 1:
        raise BadInputError(f"stable_share must lie in (0, 1], got {stable_share}")
    movement = layer_movement(pair)
    n_layers = len(movement)
    parts = segments(n_layers, segment_count)
    per_segment = [float(movement[part].mean()) for part in parts]
    middle = segment_groups(n_layers, segment_count)["middle"]
    stable = [i for i in middle if per_segment[i] < stable_share]
    chosen = stable or [min(middle, key=lambda i: per_segment[i])]
    mask = "".join("1" if i in chosen else "0" for i in range(segment_count))
    return Proposal(mask, movement.round(6).tolist(), [round(v, 6) for v in per_segment], stable, not stable)
