"""C4 (§4.4, Fig. 7, App. A): at a matched parameter budget, LoRA on middle segments scores at least as
well as LoRA on every layer, and LoRA on the first or the last segment alone scores below the best middle
mask; single-segment LoRA scores form an inverted U for every M of ``C4.inverted_u_counts`` (3, 5 and 10 by
default). The referee's control: at the same budget, the mid-block beats random layer sets and the first and
last 20% of layers."""

import pytest


def test_the_best_middle_mask_beats_full_lora_and_the_edge_masks(tuned_pair, check_claim):
    check_claim("C4", tuned_pair)


def test_single_segment_lora_scores_form_an_inverted_u(tuned_pair, lora_segments, check_claim):
    check_claim(f"C4:M{lora_segments}", tuned_pair)


def test_layer_position_not_budget_explains_the_gain(tuned_pair, check_claim):
    check_claim("C4-control", tuned_pair)


@pytest.mark.parametrize("claim", ["C4", "C4-control"])
def test_planted_controls_get_the_known_c4_verdicts(planted_tuned_pair, claim, check_claim):
    check_claim(claim, planted_tuned_pair)


def test_planted_controls_get_the_known_inverted_u_verdicts(planted_tuned_pair, lora_segments, check_claim):
    check_claim(f"C4:M{lora_segments}", planted_tuned_pair)
