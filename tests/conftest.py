"""Fixtures for the harness's own unit tests."""

from __future__ import annotations

import pytest

from harness.sources import models, zoo


@pytest.fixture(scope="session", params=models.TINY_PAIRS)
def tiny_pair(request) -> zoo.BuiltPair:
    """Each tiny pair, built once into the harness cache (minutes on first use, then instant)."""
    return zoo.build_pair(request.param, progress=False)


MICRO = dict(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=2,
    max_positions=256,
    pretrain_steps=3,
    pretrain_batch=2,
    pretrain_length=32,
    sft_steps=3,
    sft_batch=2,
    sft_examples=20,
    eval_examples=4,
)


@pytest.fixture
def micro_recipe() -> zoo.TinyRecipe:
    """A recipe small enough to build in a few seconds, for testing the build machinery."""
    return zoo.TinyRecipe(family="olmo2", **MICRO)


@pytest.fixture(scope="session", params=["olmo2", "mistral"])
def micro_pair(request, tmp_path_factory) -> zoo.BuiltPair:
    """A real but barely trained pair of each family (3 layers), built in a second into a temporary folder."""
    recipe = zoo.TinyRecipe(family=request.param, **{**MICRO, "num_layers": 3})
    return zoo.build_pair(f"micro_{request.param}", recipe, root=tmp_path_factory.mktemp("zoo"), progress=False)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh, empty harness cache for one test."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
