"""C1 (§4.2, Fig. 1): representation similarity between base and SFT stays on a high plateau over the
first ~80% of depth, then drops in the last layers; cosine similarity mirrors it; the mean shift stays
small over most layers and spikes in the last ones."""


def test_cka_stays_high_then_drops_in_the_last_layers(measured_pair, check_claim):
    check_claim("C1", measured_pair)


def test_planted_controls_get_the_known_c1_verdict(planted_pair, check_claim):
    check_claim("C1", planted_pair)


def test_the_c1_verdict_turns_as_a_planted_late_effect_grows(dose_ladder, check_dose_response):
    check_dose_response("C1", dose_ladder)
