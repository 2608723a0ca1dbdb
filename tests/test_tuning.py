"""Segment masks, budget matching and the LoRA arms peft really builds."""

import pytest

from harness import models, tuning


def test_masks_name_segments_and_their_layers():
    assert tuning.parse_mask("01100") == (1, 2)
    assert tuning.mask_layers("01100", 10) == [2, 3, 4, 5]
    assert tuning.mask_layers("11111", 10) == list(range(10))
    assert tuning.mask_layers("010", 10) == [4, 5, 6]
    assert tuning.single_segment_masks(3) == ["100", "010", "001"]
    assert len(tuning.single_segment_masks(10)) == 10


@pytest.mark.parametrize("bad", ["", "00000", "01a00", "0 1"])
def test_bad_masks_are_refused(bad):
    with pytest.raises(tuning.MaskError):
        tuning.parse_mask(bad)


@pytest.mark.parametrize("mask", ["11111", "01100", "10000", "00001", "01110", "0110000000"])
def test_arms_match_the_full_depth_budget(mask):
    full = tuning.budget_matched_arm("11111", 40, full_rank=8)
    arm = tuning.budget_matched_arm(mask, 40, full_rank=8)
    assert full.budget == 8 * 40 * 4 and arm.full_budget == full.budget
    # the rank is rounded: at most half a rank per adapted layer away from the full budget
    assert arm.budget_error <= 0.5 * len(arm.layers) / (8 * 40) + 1e-12
    assert arm.rank * len(arm.layers) == pytest.approx(8 * 40, rel=0.1)


def test_scaling_policies_keep_or_break_the_effective_scale():
    constant = [tuning.budget_matched_arm(m, 10, 8) for m in ("11111", "01000")]
    assert {arm.alpha / arm.rank for arm in constant} == {2.0}
    fixed = [tuning.budget_matched_arm(m, 10, 8, scaling="fixed_alpha") for m in ("11111", "01000")]
    assert {arm.alpha for arm in fixed} == {128.0}
    assert fixed[0].alpha / fixed[0].rank != fixed[1].alpha / fixed[1].rank  # the paper code's confound
    with pytest.raises(ValueError, match="scaling"):
        tuning.budget_matched_arm("11111", 10, 8, scaling="other")


def test_peft_adapts_exactly_the_arms_layers_and_modules(micro_pair):
    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    arm = tuning.budget_matched_arm("010", 3, full_rank=4)
    wrapped = tuning.apply_arm(model, arm)
    hidden = model.config.hidden_size
    assert arm.layers == (1,) and arm.rank == 12
    kv = wrapped.base_model.model.model.layers[1].self_attn.k_proj.base_layer.out_features
    per_layer = 2 * arm.rank * (hidden + hidden) + 2 * arm.rank * (hidden + kv)  # q, o and k, v
    assert tuning.trainable_parameters(wrapped) == per_layer


def test_a_target_that_matches_nothing_is_an_error(micro_pair):
    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    arm = tuning.budget_matched_arm("111", 3, full_rank=2, modules=("no_such_proj",))
    with pytest.raises((RuntimeError, ValueError)):
        tuning.apply_arm(model, arm)
