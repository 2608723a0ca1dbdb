"""Cost of one LoRA arm on the tiny default pair (pytest-benchmark): training steps by arm, and scoring.

The arms share one budget, so their trainable parameters are equal; what differs is how deep the
backward pass must go (an arm on the last segment stops early). No test here asserts a time.
"""

import copy

import pytest

from harness import config, training
from harness.lora import runs as lora_runs
from harness.lora import tuning
from harness.sources import models

STEPS = 10


@pytest.fixture(scope="module")
def setting(tiny_olmo2):
    resolved, _ = tiny_olmo2
    settings = lora_runs.TuneSettings.from_thresholds(config.thresholds_for("tiny_olmo2"))
    tokenizer = models.load_tokenizer(resolved.base)
    examples = lora_runs.supervised_examples(lora_runs.training_records("gsm8k_local", 500), tokenizer)
    model = models.load_model(resolved.base, device="cpu")
    return settings, tokenizer, examples, model


@pytest.mark.parametrize("mask", ["11111", "01110", "10000", "00001"])
def test_lora_training_steps(benchmark, setting, mask):
    settings, tokenizer, examples, model = setting
    arm = settings.arm(mask, tuning.mask_layers(mask, 10), 10)
    sampler = training.supervised_sampler(examples, settings.batch_size, tokenizer.pad_token_id)

    def train_arm():
        wrapped = tuning.apply_arm(copy.deepcopy(model), arm)
        training.train(
            wrapped, sampler, training.Schedule(STEPS, settings.learning_rate), seed=0, description=mask, progress=False
        )

    benchmark.pedantic(train_arm, rounds=2, warmup_rounds=0)
    benchmark.extra_info.update(steps=STEPS, batch=settings.batch_size, rank=arm.rank, layers=len(arm.layers))


def test_scoring_one_arm(benchmark, setting):
    settings, tokenizer, _, model = setting
    texts = lora_runs.retention_texts(settings)
    benchmark.pedantic(lora_runs.score_model, args=(model, tokenizer, settings, texts), rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(
        eval_items=settings.eval_limit,
        retention_texts=settings.retention_samples,
        likelihood_items=settings.likelihood_items,
    )
