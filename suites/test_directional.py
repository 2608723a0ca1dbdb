"""§3.3-3.4: SFT lowers prompt entropy (eq. 2) and dataset entropy (eq. 3), lowers effective rank (eq. 4) and
raises rank deficiency, raises sparsity, and lowers curvature (eq. 5), in the first, the middle and the last
20% of layers alike."""

import pytest

from harness.verdicts.directional import HYPOTHESES

HYPOTHESIS_PARAMS = [pytest.param(claim, id=claim.removeprefix("D:")) for claim in HYPOTHESES]


@pytest.mark.parametrize("claim", HYPOTHESIS_PARAMS)
def test_sft_moves_each_metric_the_way_the_paper_says_in_every_band(claim, measured_pair, check_claim):
    check_claim(claim, measured_pair)


@pytest.mark.parametrize("claim", HYPOTHESIS_PARAMS)
def test_planted_controls_get_the_known_directional_verdict(claim, planted_pair, check_claim):
    check_claim(claim, planted_pair)
