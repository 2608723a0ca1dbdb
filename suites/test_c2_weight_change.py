"""C2 (eq. 1, §4.3, Fig. 4): the Q/K/V/O weight change per layer is J-shaped: low in the early layers,
climbing after the midpoint, largest in the last 20%."""


def test_weight_change_is_j_shaped(measured_pair, check_claim):
    check_claim("C2", measured_pair)


def test_planted_controls_get_the_known_c2_verdict(planted_pair, check_claim):
    check_claim("C2", planted_pair)


def test_the_c2_verdict_turns_as_a_planted_late_effect_grows(dose_ladder, check_dose_response):
    check_dose_response("C2", dose_ladder)
