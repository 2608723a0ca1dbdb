"""The controls-across-builds table: each planted answer's margin, from a controls report."""

import math

import pytest

from harness.plants import across_builds


def _condition(name, value, interval, comparison, threshold, decides=True):
    return {
        "name": name,
        "value": value,
        "interval": interval,
        "comparison": comparison,
        "threshold": threshold,
        "decides": decides,
    }


def test_a_holding_answer_s_margin_is_the_tightest_near_bound_clearance():
    verdict = {
        "conditions": [
            _condition("drop", 0.10, [0.08, 0.12], ">=", 0.04),
            _condition("r", -0.95, [-0.99, -0.82], "<=", -0.79),
            _condition("shown", 0.0, [0.0, 0.0], ">=", 5.0, decides=False),
        ]
    }
    room, name = across_builds.margin(verdict, expected=True)
    assert name == "r" and room == pytest.approx(0.03)


def test_a_refuted_answer_s_margin_is_the_clearest_wrong_side_condition():
    verdict = {
        "conditions": [
            _condition("drop", 0.01, [0.005, 0.02], ">=", 0.04),  # refuted by 0.02
            _condition("r", -0.5, [-0.9, -0.2], "<=", -0.79),
        ]
    }  # straddles: not refuting
    room, name = across_builds.margin(verdict, expected=False)
    assert name == "drop" and room == pytest.approx(0.02)
    missed = {"conditions": [_condition("drop", 0.05, [0.045, 0.06], ">=", 0.04)]}
    assert across_builds.margin(missed, expected=False)[0] == pytest.approx(-0.02)


def test_an_exact_condition_decides_on_its_value_and_an_undefined_one_has_no_margin():
    exact = {"conditions": [_condition("early_to_peak", 0.2, None, "<=", 0.5)]}
    assert across_builds.margin(exact, expected=True)[0] == pytest.approx(0.3)
    undefined = {"conditions": [_condition("r", float("nan"), None, "<=", -0.79)]}
    assert math.isnan(across_builds.margin(undefined, expected=True)[0])


def test_rows_match_planted_answers_including_c3_keys_that_carry_their_m():
    report = {
        "pairs": {
            "planted_edges": {
                "verdicts": {
                    "C3:base_with_sft_block:M5": {
                        "outcome": "holds",
                        "conditions": [_condition("gap", 1.4, [1.3, 1.5], ">=", 0)],
                    },
                    "C3:sft_with_base_block:M5": {
                        "outcome": "holds",
                        "conditions": [_condition("gap", 0.2, [0.1, 0.3], ">=", 0)],
                    },
                    "D:sparsity": {"outcome": "holds", "conditions": []},
                }
            }
        }
    }
    expected = {"planted_edges": {"C3:base_with_sft_block": True, "C3:sft_with_base_block": False}}
    rows = across_builds.control_rows(report, expected, "native")
    assert [(r["claim"], r["correct"]) for r in rows] == [
        ("C3:base_with_sft_block:M5", True),
        ("C3:sft_with_base_block:M5", False),
    ]
    table = across_builds.margins_table(rows)
    assert table.loc[("planted_edges", "C3:sft_with_base_block:M5", "refuted"), "native"].startswith("WRONG holds")
