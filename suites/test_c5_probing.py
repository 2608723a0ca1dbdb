"""C5 (§4.3, Fig. 3): logit-lens next-token accuracy stays near zero over most of the depth and rises
sharply in the last ~20% of layers (the "dormancy-to-emergence" pattern).

Planted weight perturbations have no known probing answer; the predicate's planted controls are
per-layer series, in tests/test_claims.py."""


def test_next_token_accuracy_emerges_only_in_the_last_layers(measured_pair, check_claim):
    check_claim("C5", measured_pair)
