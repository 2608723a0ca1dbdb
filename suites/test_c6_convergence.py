"""C6 (§4.2, Fig. 2): the intrinsic metrics of base and SFT (effective rank, entropy, condition number,
spectral norm) track each other across layers, in three stages: a transition from layer 0 to 1, a
plateau, and a bottleneck in the tail where effective rank collapses and the spectral norm explodes.

Its planted controls are built by hand in those three stages (the SFT a slightly perturbed copy), with
the transition, the collapse or the explosion missing, or with the SFT's bottleneck in the middle; on the
ladder `last_write` the last layer's write grows from the plateau's gain to the planted bottleneck's."""


def test_base_and_sft_converge_independently_in_three_stages(measured_pair, check_claim):
    check_claim("C6", measured_pair)


def test_planted_controls_get_the_known_c6_verdict(planted_stages_pair, check_claim):
    check_claim("C6", planted_stages_pair)


def test_the_c6_verdict_turns_as_the_planted_last_write_grows(dose_ladder, check_dose_response):
    check_dose_response("C6", dose_ladder)
