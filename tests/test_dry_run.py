"""The dry run of a pair's shape: every stage measured on a random pair built to that shape, and the estimate."""

import json
import re

import pytest

from harness import cli, dry_run
from harness.sources import models

SMALL_SHAPE = {
    "model_type": "olmo2",
    "architectures": ["Olmo2ForCausalLM"],
    "vocab_size": 2048,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}


def smallest_dry_run(shape):
    """Every stage of a dry run of ``shape`` at the smallest sizes that still exercise it."""
    return dry_run.run_dry(
        str(shape),
        dtype="float32",
        device="cpu",
        progress=False,
        sizes=dry_run.Sizes(profile_samples=4, token_samples=2, lora_steps=1),
    )


@pytest.mark.parametrize("name", models.REAL_PAIRS)
def test_every_registered_pair_has_a_shape_of_its_published_size(name):
    # the publisher's figure ("8.03B", "8.2B") to its last digit: the count must round to it
    published = models.get_spec(name).published_parameters
    digits = published.removesuffix("B")
    half_unit = 0.5 * 10 ** -(len(digits.partition(".")[2]))
    _, shape = dry_run.load_shape(name)
    config = dry_run.model_config(shape, dry_run.shape_tokenizer(shape))
    assert models.get_spec(name).family == shape["model_type"]
    assert abs(dry_run.parameter_count(config) / 1e9 - float(digits)) <= half_unit, name


def test_the_shipped_shapes_are_the_registered_pairs():
    assert dry_run.shape_names() == sorted(models.REAL_PAIRS)


SMALL_MISTRAL = {
    **SMALL_SHAPE,
    "model_type": "mistral",
    "architectures": ["MistralForCausalLM"],
    "num_key_value_heads": 2,
    "head_dim": 16,
    "sliding_window": 64,
    "rms_norm_eps": 1e-5,
}


@pytest.mark.parametrize("small", [SMALL_SHAPE, SMALL_MISTRAL], ids=["olmo2", "mistral"])
def test_a_small_shape_runs_every_stage_and_estimates_the_full_run(small, isolated_cache, tmp_path, capsys):
    shape = tmp_path / "small.json"
    shape.write_text(json.dumps(small))
    out = tmp_path / "dry-run.json"
    assert (
        cli.main(
            [
                "dry-run",
                "--shape",
                str(shape),
                "--dtype",
                "float32",
                "--device",
                "cpu",
                "--samples",
                "6",
                "--token-samples",
                "2",
                "--lora-steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for stage in ("build", "profile", "weight change", "swap", "lm-eval", "LoRA", "estimated full run", "total"):
        assert stage in printed, stage
    report = json.loads(out.read_text())
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert all(stage["seconds"] > 0 and stage["peak_host_mib"] > 0 for stage in stages.values())
    # the weight change stage measures the planted perturbation (relative, per layer) back
    change = stages["weight change"]["detail"]
    assert change["worst_relative_error"] < 0.05
    assert change["relative_change_last"] > 5 * change["relative_change_first"]
    assert set(stages["LoRA"]["detail"]["arms"]) == {"full", "mid-block"}
    assert report["estimate_seconds"]["total"] > 0
    # built once: a second dry run finds the pair in the cache
    assert len(list(isolated_cache.glob("dry-run/*/base/*.safetensors"))) >= 1


def test_a_shape_that_cannot_fit_is_refused_before_anything_is_built(isolated_cache, monkeypatch):
    monkeypatch.setattr(dry_run, "available_memory_bytes", lambda: 2**30)
    with pytest.raises(dry_run.DoesNotFitError, match="GiB of host memory"):
        dry_run.run_dry("olmo2_7b", device="cpu", progress=False)
    assert not list(isolated_cache.glob("dry-run/*/*"))


def test_an_unknown_shape_names_the_shipped_ones():
    with pytest.raises(dry_run.BadInputError, match="olmo2_7b"):
        dry_run.load_shape("gpt5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"model_type": "llama", "hidden_size": 64,', r"toy.json is not valid JSON"),
        ("[1, 2]", r"toy.json is not a config.json: no model_type"),
        (json.dumps({**SMALL_SHAPE, "model_type": "llama9"}), r"model_type 'llama9' is not one transformers \S+ knows"),
        (
            json.dumps({**SMALL_SHAPE, "model_type": "llama", "num_attention_heads": 3}),
            r"not a llama config transformers can build \(.*not a multiple of the number of attention heads",
        ),
    ],
    ids=["not_json", "not_an_object", "unknown_model_type", "heads_do_not_divide"],
)
def test_a_shape_file_transformers_cannot_build_is_refused_in_one_line_before_anything_is_built(
    text, expected, isolated_cache, tmp_path, capsys
):
    (tmp_path / "toy.json").write_text(text)
    assert cli.main(["dry-run", "--shape", str(tmp_path / "toy.json"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error: ") and re.search(expected, error[-1])
    assert not list(isolated_cache.glob("dry-run/*/*"))


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--samples", "1"], "argument --samples: --samples (dataset metrics need two) must be at least 2; got 1"),
        (["--token-samples", "-1"], "argument --token-samples: --token-samples must be at least 0; got -1"),
        (["--lora-steps", "0"], "argument --lora-steps: --lora-steps must be at least 1; got 0"),
    ],
)
def test_sizes_no_stage_can_run_at_are_usage_errors_before_anything_is_built(option, expected, capsys, monkeypatch):
    monkeypatch.setattr(dry_run, "run_dry", lambda *a, **k: pytest.fail("the dry run started"))
    with pytest.raises(SystemExit) as refused:
        cli.main(["dry-run", "--pair", "olmo2_1b", *option])
    assert refused.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize("vocabulary", [64, 512])
def test_a_toy_vocabulary_runs_too(vocabulary, isolated_cache, tmp_path):
    # below a byte-level tokenizer's 300 tokens the shape's vocabulary is raised (and said so); above, the
    # tokenizer is trained to the shape's own size, so the shape is built exactly
    shape = tmp_path / "toy.json"
    shape.write_text(
        json.dumps(
            {**SMALL_SHAPE, "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocabulary}
        )
    )
    result = smallest_dry_run(shape)
    assert [stage.name for stage in result.stages][-1] == "LoRA"
    assert ("raised from 64" in result.facts.get("note", "")) == (vocabulary == 64)
    assert result.shape["vocab_size"] == max(vocabulary, dry_run.TOKENIZER_VOCAB if vocabulary < 300 else 0)


@pytest.mark.parametrize("layers", [1, 2])
def test_a_model_too_shallow_for_the_depth_groups_runs_every_stage_it_can(layers, isolated_cache, tmp_path):
    shape = tmp_path / "shallow.json"
    shape.write_text(json.dumps({**SMALL_SHAPE, "num_hidden_layers": layers}))
    result = smallest_dry_run(shape)
    assert [stage.name for stage in result.stages] == ["build", "profile", "weight change", "swap", "lm-eval", "LoRA"]
    lora = result.stage("LoRA").detail
    assert set(lora["arms"]) == {"full"} and "needs at least 3 decoder layers" in lora["mid_block"]
