"""One definition of first / middle / last 20% of depth, shared by every claim that speaks of depth."""

import pytest

from harness import depth
from harness.lora import block_finder, tuning

LAYER_COUNTS = [10, 16, 32, 40, 64]
SEGMENT_COUNTS = [3, 5, 10]


@pytest.mark.parametrize("n_layers", LAYER_COUNTS)
@pytest.mark.parametrize("count", SEGMENT_COUNTS)
def test_segment_groups_partition_the_segments_symmetrically(n_layers, count):
    groups = depth.segment_groups(n_layers, count)
    assert sorted(groups["first"] + groups["middle"] + groups["last"]) == list(range(count))
    assert all(groups[name] for name in ("first", "middle", "last"))
    assert len(groups["first"]) == len(groups["last"])  # the 20% at each end are mirror images
    assert [count - 1 - i for i in groups["first"]][::-1] == groups["last"]


@pytest.mark.parametrize(
    "count, expected", [(3, ([0], [1], [2])), (5, ([0], [1, 2, 3], [4])), (10, ([0, 1], [2, 3, 4, 5, 6, 7], [8, 9]))]
)
def test_the_papers_segments_are_the_first_middle_and_last(count, expected):
    for n_layers in LAYER_COUNTS:
        groups = depth.segment_groups(n_layers, count)
        assert (groups["first"], groups["middle"], groups["last"]) == expected


@pytest.mark.parametrize("n_layers", LAYER_COUNTS)
def test_layer_groups_are_the_first_and_last_20_percent_of_layers(n_layers):
    groups = depth.layer_groups(n_layers)
    assert len(groups["first"]) == len(groups["last"]) == round(0.2 * n_layers)
    assert groups["middle"] == list(range(len(groups["first"]), n_layers - len(groups["last"])))
    assert tuning.middle_block(n_layers) == groups["middle"]
    assert tuning.edge_layers(n_layers) == {"first": groups["first"], "last": groups["last"]}
    # the tail of the per-layer claims (profile row r = decoder layer r - 1) is the same last 20%
    tail_rows = [row for row in range(n_layers + 1) if depth.is_tail_row(row, n_layers)]
    assert tail_rows == [layer + 1 for layer in groups["last"]]


@pytest.mark.parametrize("n_layers", LAYER_COUNTS)
@pytest.mark.parametrize("count", SEGMENT_COUNTS)
def test_every_consumer_agrees_on_which_masks_are_middle(n_layers, count):
    groups = depth.segment_groups(n_layers, count)
    singles = tuning.single_segment_masks(count)
    middle = tuning.middle_masks(singles)
    assert middle == [singles[i] for i in groups["middle"]]  # C4 / C4:M<n> use the masks, C3 the segments
    for i, mask in enumerate(singles):
        expected = next(name for name in ("first", "middle", "last") if i in groups[name])
        assert depth.mask_group(mask) == expected
    assert depth.mask_group("1" * count) == "mixed"


def test_the_block_finder_only_proposes_middle_segments():
    import pandas as pd

    for n_layers in LAYER_COUNTS:
        # movement lowest at the very first layer: a finder that ignored the groups would pick segment 0
        movement = [0.0] + [1.0] * n_layers
        pair = pd.DataFrame({"weight_change": movement, "cka": [1 - m for m in movement]})
        for count in (5, 10):
            proposal = block_finder.propose_mask(pair, count)
            assert depth.mask_group(proposal.mask) == "middle", (n_layers, count, proposal.mask)


def test_too_few_units_for_three_groups_is_an_error():
    with pytest.raises(ValueError, match="at least 3"):
        depth.unit_groups(2)
    with pytest.raises(ValueError, match="cannot split"):
        depth.segment_groups(4, 5)


def test_rows_and_layers_convert_one_way_only():
    """Profile row r is the output of 0-based decoder layer r − 1; row 0, the embeddings, belongs to no layer."""
    assert [depth.row_of_layer(layer) for layer in range(4)] == [1, 2, 3, 4]
    assert [depth.layer_of_row(row) for row in range(1, 5)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="embedding output"):
        depth.layer_of_row(depth.EMBEDDING_ROW)
    # the tail is read on rows, by their layer's centre: with 10 layers, layers 8 and 9 (rows 9 and 10)
    assert [row for row in range(11) if depth.is_tail_row(row, 10)] == [9, 10]
    assert depth.row_depth(depth.EMBEDDING_ROW, 10) == 0.0 and depth.row_depth(1, 10) == 0.05
