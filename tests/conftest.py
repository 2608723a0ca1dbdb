"""Fixtures for the harness's own unit tests."""

from __future__ import annotations

import pytest

from harness import models, zoo


@pytest.fixture(scope="session", params=models.TINY_PAIRS)
def tiny_pair(request) -> zoo.BuiltPair:
    """Each tiny pair, built once into the harness cache (minutes on first use, then instant)."""
    return zoo.build_pair(request.param, progress=False)


@pytest.fixture
def micro_recipe() -> zoo.TinyRecipe:
    """A recipe small enough to build in a few seconds, for testing the build machinery."""
    return zoo.TinyRecipe(family="olmo2", vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=2,
                          num_heads=2, num_kv_heads=2, max_positions=256, pretrain_steps=3, pretrain_batch=2,
                          pretrain_length=32, sft_steps=3, sft_batch=2, sft_examples=20, eval_examples=4)
