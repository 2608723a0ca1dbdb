"""C7 (Fig. 5): across layers, weight change correlates strongly negatively with the cosine similarity
of base and SFT representations, and strongly positively with the change of spectral metrics."""


def test_weight_change_explains_the_representation_shift(measured_pair, check_claim):
    check_claim("C7", measured_pair)


def test_planted_controls_get_the_known_c7_verdict(planted_pair, check_claim):
    check_claim("C7", planted_pair)


def test_the_c7_verdict_turns_as_a_planted_late_effect_grows(dose_ladder, check_dose_response):
    check_dose_response("C7", dose_ladder)
