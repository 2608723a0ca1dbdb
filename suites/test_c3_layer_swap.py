"""C3 (§4.3, Fig. 6): replacing a block of the base model's layers by the SFT model's (and the reverse)
shows an inverted U: swapping a middle segment scores at least as well as swapping the first or the
last 20% of layers. Scored by the log-likelihood of held-out GSM8K-format answers, for every M of
``C3.segment_counts`` (3, 5 and 10 by default)."""

import pytest

from harness.measure.swap import DIRECTIONS


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_swapping_a_middle_block_does_best(swapped_pair, direction, swap_segments, check_claim):
    check_claim("C3", swapped_pair, direction, swap_segments)


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_planted_controls_get_the_known_c3_verdict(planted_swap_pair, direction, swap_segments, check_claim):
    check_claim("C3", planted_swap_pair, direction, swap_segments)
