"""Where in depth a layer or a segment lies: the first 20%, the middle, or the last 20%; and how layers are numbered.

Layer numbering, one for the whole harness: a model with L decoder layers has *profile rows* 0..L. Row 0 is the
embedding output; row r (1 ≤ r ≤ L) is the output of decoder layer r − 1, where decoder layers carry their
0-based module index in the model (``model.layers[i]``, as in Hugging Face checkpoints, LoRA masks and layer
swaps). Every per-layer table, series and report is indexed by rows; every mask, segment and group of layers
by 0-based layer indices; ``row_of_layer`` and ``layer_of_row`` convert, and nothing else adds or subtracts 1.

One definition serves every claim that speaks of depth (the tail of the per-layer
claims, the layer swaps of C3, the LoRA masks of C4 and C4:M<n>, the referee's
first/last-20% arms, the mid-block and the block finder): unit i of M equal units
(layers, M = L; or segments) lies in the first group when its centre, (i + ½) / M,
is at most ``edge``, in the last when it is at least 1 − ``edge``, and in the
middle otherwise. For M = 5 that is segment 1 / segments 2-4 / segment 5 (the
paper's ``10000``, ``01110``, ``00001``); for M = 10, two segments at each end
(App. A's "20%-80%"); for M = 3, one at each end. Segments are the contiguous
splits of ``segments`` (earlier ones one layer longer when L is not a multiple of M).
"""

from __future__ import annotations

import numpy as np

from harness.errors import BadInputError

EDGE = 0.2  # "the first/last 20%" (§4.3-4.4, App. A)


EMBEDDING_ROW = 0  # the profile row of the embedding output


def row_of_layer(layer: int) -> int:
    """The profile row of 0-based decoder layer ``layer``: its output."""
    return layer + 1


def layer_of_row(row: int) -> int:
    """The 0-based decoder layer whose output is profile row ``row`` (row ≥ 1)."""
    if row < 1:
        raise ValueError(f"profile row {row} is the embedding output, the output of no decoder layer")
    return row - 1


def segments(n_layers: int, count: int) -> list[list[int]]:
    """Decoder layers 0..n-1 split into ``count`` contiguous segments as equal as possible (earlier ones longer)."""
    if count < 1:
        raise BadInputError(f"a segment count must be at least 1; got {count}")
    if count > n_layers:
        raise BadInputError(
            f"cannot split {n_layers} layers into {count} segments: a claim at M = {count} needs at "
            f"least {count} decoder layers"
        )
    return [part.tolist() for part in np.array_split(np.arange(n_layers), count)]


def unit_groups(count: int, edge: float = EDGE) -> dict[str, list[int]]:
    """Indices 0..count-1 of equal units in the first ``edge``, the middle, and the last ``edge`` of depth."""
    if not 0 < edge < 0.5:
        raise BadInputError(f"edge must lie in (0, 0.5), got {edge}")
    if count < 3:
        raise BadInputError(f"first, middle and last need at least 3 units; got {count}")
    centres = [(i + 0.5) / count for i in range(count)]
    first = [i for i, c in enumerate(centres) if c <= edge]
    last = [i for i, c in enumerate(centres) if c >= 1 - edge]
    # With fewer than 1 / edge units the ends may be empty by the centre rule; the outermost unit is still an end.
    first, last = first or [0], last or [count - 1]
    middle = [i for i in range(count) if i not in first and i not in last]
    if not middle:
        raise BadInputError(f"{count} units at edge {edge} leave no middle unit")
    return {"first": first, "middle": middle, "last": last}


def segment_groups(n_layers: int, count: int, edge: float = EDGE) -> dict[str, list[int]]:
    """Segment indices (of ``segments(n_layers, count)``) in the first, middle and last groups."""
    segments(n_layers, count)  # validates the split
    return unit_groups(count, edge)


def layer_groups(n_layers: int, edge: float = EDGE) -> dict[str, list[int]]:
    """0-based decoder layers in the first 20%, the middle (the paper's mid-block) and the last 20%."""
    return unit_groups(n_layers, edge)


def mask_group(mask: str, edge: float = EDGE) -> str:
    """'first', 'last', 'middle' or 'mixed' for a segment mask such as ``01100`` (M = len(mask))."""
    groups = unit_groups(len(mask), edge)
    chosen = {i for i, bit in enumerate(mask) if bit == "1"}
    if not chosen:
        raise BadInputError(f"mask {mask!r} selects no segment")
    for name in ("first", "middle", "last"):
        if chosen <= set(groups[name]):
            return name
    return "mixed"


def is_tail_row(row: int, n_layers: int, edge: float = EDGE) -> bool:
    """Whether profile row ``row`` lies in the last 20% (by its decoder layer's centre; the embeddings never)."""
    return row != EMBEDDING_ROW and row_depth(row, n_layers) >= 1 - edge


def row_depth(row: int, n_layers: int) -> float:
    """Relative depth of profile row ``row``: the centre of its decoder layer; the embeddings at 0."""
    return 0.0 if row == EMBEDDING_ROW else (layer_of_row(row) + 0.5) / n_layers
