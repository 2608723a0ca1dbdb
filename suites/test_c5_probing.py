"""C5 (§4.3, Fig. 3): logit-lens next-token accuracy stays near zero over most of the depth and rises
sharply in the last ~20% of layers (the "dormancy-to-emergence" pattern).

Its planted controls place a trained two-layer reader among identity blocks: in the last two layers (the
pattern), in the first two (it emerges at once), or nowhere (it never rises)."""


def test_next_token_accuracy_emerges_only_in_the_last_layers(measured_pair, check_claim):
    check_claim("C5", measured_pair)


def test_planted_controls_get_the_known_c5_verdict(planted_emergence_pair, check_claim):
    check_claim("C5", planted_emergence_pair)
