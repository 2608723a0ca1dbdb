"""Segment masks, budget matching and the LoRA arms peft really builds."""

import dataclasses
import warnings

import pytest
import torch

from harness.errors import BadInputError
from harness.lora import tuning
from harness.sources import models
from harness.sources.layouts import ATTENTION_MODULES, MLP_MODULES


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


def test_wrapping_a_model_with_an_arm_shows_none_of_peft_s_expected_warnings(micro_pair):
    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning.apply_arm(model, tuning.budget_matched_arm("010", 3, full_rank=4))
    assert not [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)]


def test_merging_the_trained_adapters_leaves_the_models_outputs_unchanged(micro_pair):
    torch.manual_seed(0)
    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    tokens = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        untuned = model(input_ids=tokens).logits
    wrapped = tuning.apply_arm(
        model, tuning.budget_matched_arm("011", 3, full_rank=4, modules=(*ATTENTION_MODULES, *MLP_MODULES))
    )
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:  # as if trained: B starts at zero, where an adapter changes nothing
                parameter.normal_(std=0.05)
        adapted = wrapped(input_ids=tokens).logits
        wrapped.merge_adapter()
        merged = wrapped(input_ids=tokens).logits
    assert (adapted - untuned).abs().max() > 1e-2  # the adapters do change the outputs
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)


def test_a_target_that_matches_nothing_is_an_error(micro_pair):
    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    arm = tuning.budget_matched_arm("111", 3, full_rank=2, modules=("no_such_proj",))
    with pytest.raises((RuntimeError, ValueError)):
        tuning.apply_arm(model, arm)


# --- study plans, the block finder, resumable training, one real run ----------------------------------


def test_the_study_plan_matches_every_arms_budget_and_trains_each_layer_set_once():
    from harness import config
    from harness.lora import plan as lora_plan
    from harness.lora import runs as lora_runs

    thresholds = config.thresholds_for("planted")
    settings = lora_runs.TuneSettings(task="gsm8k_local")
    plan = lora_plan.plan_arms(32, thresholds, settings, finder_mask="01100")
    layer_sets = [arm.layers for arm in plan.arms]
    assert len(layer_sets) == len(set(layer_sets))
    assert {arm.full_budget for arm in plan.arms} == {8 * 32 * 4}
    assert all(arm.budget_error <= 0.5 * len(arm.layers) / (8 * 32) for arm in plan.arms)
    assert plan.roles["middle"] == ["01000", "00100", "00010", "01100", "00110", "01110"]
    block = tuple(tuning.middle_block(32))
    random_sets = [next(a.layers for a in plan.arms if a.label == label) for label in plan.roles["random"]]
    assert len(random_sets) == 3 and all(len(s) == len(block) and s != block for s in random_sets)
    assert plan.roles["first20"] == ["first20"] and next(a for a in plan.arms if a.label == "first20").layers == (
        0,
        1,
        2,
        3,
        4,
        5,
    )
    assert len(plan.roles["single:10"]) == 10 and plan.roles["finder"] == ["01100"]
    assert lora_plan.plan_arms(32, thresholds, settings).arms == lora_plan.plan_arms(32, thresholds, settings).arms


def planted_profile(movement):
    import pandas as pd

    layers = range(len(movement) + 1)
    change = [float("nan"), *movement]
    return pd.DataFrame({"weight_change": change, "cka": [1.0, *(1 - 0.1 * m for m in movement)]}, index=layers)


def test_the_block_finder_picks_the_calm_middle_before_a_late_rise():
    from harness.lora import block_finder

    late_rise = [0.01] * 7 + [0.5, 0.8, 1.0]
    proposal = block_finder.propose_mask(planted_profile(late_rise), 5)
    assert proposal.mask == "01110" and not proposal.fallback
    middle_moves = [0.0, 0.1, 1.0, 1.0, 1.0, 1.0, 0.2, 0.1, 0.1, 0.0]
    assert block_finder.propose_mask(planted_profile(middle_moves), 5).mask == "00010"
    ramp = [i / 9 for i in range(10)]  # nothing calm in the middle but its start
    assert block_finder.propose_mask(planted_profile(ramp), 5).mask == "01000"
    everywhere = [0.0, 1.0, 0.9, 1.0, 0.95, 1.0, 0.9, 1.0, 0.9, 1.0]
    fallback = block_finder.propose_mask(planted_profile(everywhere), 5)
    assert fallback.fallback and fallback.mask.count("1") == 1


def test_the_block_finder_refuses_profiles_it_cannot_read():
    import pandas as pd

    from harness.lora import block_finder

    with pytest.raises(ValueError, match="non-finite"):
        block_finder.propose_mask(planted_profile([0.1, float("nan"), 0.3, 0.4, 0.5]), 5)
    with pytest.raises(BadInputError, match="cka"):
        block_finder.propose_mask(pd.DataFrame({"weight_change": [0.1] * 11}), 5)


def test_an_interrupted_training_run_resumes_to_the_same_weights(micro_pair, tmp_path):
    import torch

    from harness import training

    def fresh():
        model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
        return tuning.apply_arm(model, tuning.budget_matched_arm("010", 3, full_rank=2))

    stream = torch.arange(400) % 50
    sampler = training.window_sampler(stream, 2, 16)
    schedule = training.Schedule(6, 1e-2)
    torch.manual_seed(0)
    whole = fresh()
    expected = training.train(whole, sampler, schedule, seed=3, description="whole", progress=False)

    calls = {"n": 0}

    def dies_at_step_five(generator):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return sampler(generator)

    checkpoints = training.Checkpoints(tmp_path / "checkpoint.pt", every=2)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        training.train(
            fresh(), dies_at_step_five, schedule, seed=3, description="cut", progress=False, checkpoints=checkpoints
        )
    assert torch.load(checkpoints.path, weights_only=True)["step"] == 4
    torch.manual_seed(1)  # a different initialisation: the checkpoint must overwrite it
    resumed = fresh()
    losses = training.train(
        resumed, sampler, schedule, seed=3, description="resumed", progress=False, checkpoints=checkpoints
    )
    assert losses == pytest.approx(expected)
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_one_arm_is_trained_scored_and_cached(micro_pair, isolated_cache, monkeypatch):
    from harness import training
    from harness.lora import runs as lora_runs

    settings = lora_runs.TuneSettings(
        task="gsm8k_local",
        steps=3,
        batch_size=2,
        learning_rate=1e-2,
        seeds=(0,),
        train_examples=20,
        eval_limit=6,
        max_gen_toks=6,
        num_fewshot=0,
        likelihood_items=4,
        retention_sets=("wikitext-local", "ifeval"),
        retention_samples=5,
        retention_max_tokens=32,
        checkpoint_every=2,
    )
    base = models.ModelRef(str(micro_pair.base_dir))
    arm = settings.arm("010", tuning.mask_layers("010", 3), 3)
    result = lora_runs.run_arm(base, arm, 0, settings, device="cpu", progress=False)
    assert result["label"] == "010" and result["trainable_parameters"] > 0
    task = result["task"]
    assert len(task["per_item"]) == 6 and task["score"] == pytest.approx(sum(task["per_item"]) / 6)
    assert result["retention"]["wikitext-local"]["perplexity"] > 1
    assert "unavailable" in result["retention"]["ifeval"]  # the hub is offline in tests
    assert not list(isolated_cache.rglob("checkpoint.pt"))  # removed once the result is written

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(training, "train", no_training)
    assert lora_runs.run_arm(base, arm, 0, settings, device="cpu", progress=False) == result
    other_seed = settings.arm("010", tuning.mask_layers("010", 3), 3)
    with pytest.raises(AssertionError, match="trained again"):
        lora_runs.run_arm(base, other_seed, 1, settings, device="cpu", progress=False)


def test_tuning_settings_come_from_the_config_and_auto_falls_back_offline(monkeypatch):
    from harness import config
    from harness.lora import runs as lora_runs

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tiny = lora_runs.TuneSettings.from_thresholds(config.thresholds_for("tiny_olmo2"))
    assert tiny.task == "gsm8k_local" and tiny.seeds == (0, 1, 2) and "down_proj" in tiny.modules
    real = lora_runs.TuneSettings.from_thresholds(config.thresholds_for("olmo2_7b"))
    assert real.task == "auto" and real.modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert real.resolved().task == "gsm8k_local"  # GSM8K's train split cannot be had offline
    assert real.eval_options().batch_size is None  # lm-eval's own choice: "auto" on a GPU, 8 on the CPU
    planted = lora_runs.TuneSettings.from_thresholds(config.thresholds_for("planted_lora_mid_block"))
    assert planted.eval_options().batch_size == planted.eval_batch_size == 32
    # the batch can change a generated token by rounding, so a run scored another way is another run
    assert planted.training_key() != dataclasses.replace(planted, eval_batch_size=8).training_key()
    broken = config.thresholds_for("olmo2_7b")
    broken["tuning"]["warmup"] = 3
    with pytest.raises(ValueError, match="unknown tuning settings"):
        lora_runs.TuneSettings.from_thresholds(broken)


def test_a_lora_run_is_keyed_by_the_base_models_config_and_tokenizer_too(micro_pair, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(micro_pair.base_dir, tmp_path / "base")
    ref = models.ModelRef(str(folder))
    from harness.lora import runs as lora_runs

    before = lora_runs._run_folder(ref, "01000", {"seed": 0})
    assert lora_runs._run_folder(ref, "01000", {"seed": 0}) == before
    for name in ("config.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["harness_test_edit"] = name
        (folder / name).write_text(json.dumps(data))
        after = lora_runs._run_folder(ref, "01000", {"seed": 0})
        assert after != before, name
        before = after
