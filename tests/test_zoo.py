import dataclasses
from pathlib import Path

import pytest

from harness import cache
from harness.sources import models, scoring, synthetic, zoo


def test_same_recipe_and_seed_rebuild_identical_weights(micro_recipe, tmp_path):
    first = zoo.build_pair("micro", micro_recipe, root=tmp_path / "a", progress=False)
    second = zoo.build_pair("micro", micro_recipe, root=tmp_path / "b", progress=False)
    assert first.info["weights_sha256"] == second.info["weights_sha256"]
    assert cache.directory_sha256(first.sft_dir) == cache.directory_sha256(second.sft_dir)


def test_another_seed_gives_other_weights(micro_recipe, tmp_path):
    first = zoo.build_pair("micro", micro_recipe, root=tmp_path, progress=False)
    other = zoo.build_pair("micro", dataclasses.replace(micro_recipe, seed=1), root=tmp_path, progress=False)
    assert first.directory != other.directory
    assert first.info["weights_sha256"]["base"] != other.info["weights_sha256"]["base"]


def test_cached_pair_is_reused_without_rebuilding(micro_recipe, tmp_path, monkeypatch):
    built = zoo.build_pair("micro", micro_recipe, root=tmp_path, progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a cached pair was rebuilt")

    monkeypatch.setattr(zoo, "build_pair_into", refuse)
    again = zoo.build_pair("micro", micro_recipe, root=tmp_path, progress=False)
    assert again.directory == built.directory and again.info == built.info


def test_changed_recipe_is_rebuilt_under_a_new_key(micro_recipe):
    assert micro_recipe.key() != dataclasses.replace(micro_recipe, sft_steps=4).key()
    assert micro_recipe.key() == dataclasses.replace(micro_recipe).key()


def test_interrupted_build_leaves_no_partial_pair(micro_recipe, tmp_path, monkeypatch):
    def interrupted(recipe, directory: Path, progress=True):
        (directory / "base").mkdir()
        (directory / "base" / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo, "build_pair_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        zoo.build_pair("micro", micro_recipe, root=tmp_path, progress=False)
    left = [path.name for path in (tmp_path / "zoo").iterdir()]
    assert left == [f".micro-{micro_recipe.key()}.lock"]  # only the empty lock file that builders coordinate on


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        zoo.TinyRecipe(family="gpt2")


@pytest.mark.slow
def test_tiny_pair_is_a_real_architecture_of_the_required_size(tiny_pair):
    config = models.load_config(models.ModelRef(str(tiny_pair.base_dir)))
    recipe = zoo.RECIPES[tiny_pair.name]
    assert config.model_type == recipe.family
    assert config.num_hidden_layers >= 10 and config.hidden_size >= 128
    assert tiny_pair.info["parameters"] > 1_000_000


@pytest.mark.slow
def test_sft_model_learned_the_task_and_base_did_not(tiny_pair):
    # Fresh held-out problems, not the ones scored at build time.
    records = [synthetic.gsm8k_record(0, "test", i) for i in range(1000, 1200)]
    tokenizer = models.load_tokenizer(models.ModelRef(str(tiny_pair.sft_dir)))
    scores = {}
    for label, directory in (("base", tiny_pair.base_dir), ("sft", tiny_pair.sft_dir)):
        model = models.load_model(models.ModelRef(str(directory)), dtype="float32", device="cpu")
        scores[label] = scoring.greedy_exact_match(model, tokenizer, records)
        del model
    assert scores["sft"] >= 0.3, scores
    assert scores["base"] <= 0.05, scores
