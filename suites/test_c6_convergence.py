"""C6 (§4.2, Fig. 2): the intrinsic metrics of base and SFT (effective rank, entropy, condition number,
spectral norm) track each other across layers, in three stages: a transition from layer 0 to 1, a
plateau, and a bottleneck in the tail where effective rank collapses and the spectral norm explodes.

The predicate's planted controls are per-layer series, in tests/test_claims.py."""


def test_base_and_sft_converge_independently_in_three_stages(measured_pair, check_claim):
    check_claim("C6", measured_pair)
