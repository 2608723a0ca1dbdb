"""The dose-response check of a ladder of planted controls: a rung's planted answer, and one direction."""

from harness.verdicts import claims, dose_response


def verdict(value, low, high, threshold=0.04):
    condition = claims.Condition("cka_drop", value, threshold, ">=", interval=(low, high))
    return claims.Verdict("C1", "CKA plateau then drop", [condition], "cka_drop")


def rows(*rungs):
    return dose_response.response("C1", [(dose, verdict(*values), expected) for dose, values, expected in rungs])


def test_a_ladder_that_turns_once_at_its_threshold_passes():
    measured = rows(
        (10.0, (0.11, 0.10, 0.12), True), (0.0, (0.007, 0.006, 0.008), False), (3.0, (0.038, 0.03, 0.045), None)
    )
    assert [row["dose"] for row in measured] == [0.0, 3.0, 10.0]
    assert [row["outcome"] for row in measured] == [claims.REFUTED, claims.INCONCLUSIVE, claims.HOLDS]
    assert dose_response.wrong_answers(measured) == [] and dose_response.reversals(measured) == []
    assert "(near the threshold)" in dose_response.table(measured)


def test_a_rung_without_its_planted_answer_is_named():
    measured = rows((0.0, (0.05, 0.045, 0.055), False), (10.0, (0.11, 0.10, 0.12), True))
    assert dose_response.wrong_answers(measured) == [
        "dose 0: C1 is holds, planted refuted (cka_drop = 0.05, interval [0.045, 0.055], threshold >= 0.04)"
    ]


def test_a_weaker_verdict_at_a_larger_dose_is_a_reversal():
    measured = rows(
        (0.0, (0.007, 0.006, 0.008), False),
        (1.0, (0.06, 0.05, 0.07), None),
        (3.0, (0.039, 0.03, 0.045), None),
        (10.0, (0.11, 0.10, 0.12), True),
    )
    assert dose_response.reversals(measured) == ["C1 is holds at dose 1 but inconclusive at dose 3"]


def test_an_exact_statistic_has_a_point_interval():
    condition = claims.Condition("early_to_peak", 0.2, 0.5, "<=")
    (row,) = dose_response.response("C2", [(0.3, claims.Verdict("C2", "J", [condition], "early_to_peak"), True)])
    assert (row["ci_low"], row["ci_high"], row["outcome"], row["expected"]) == (0.2, 0.2, claims.HOLDS, claims.HOLDS)
