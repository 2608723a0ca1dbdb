"""Time and memory of each stage at a real model's shape, each stage in a process of its own (pytest-benchmark).

By default a small shape, so the memory rules are checked on every run in seconds;
``HARNESS_BENCH_SHAPE=olmo2_1b`` (or any shipped shape, or a config.json) measures a
registered pair's real size on this machine (the 1B shape: a few minutes, ~8 GB of
memory, ~6 GB of disk in the harness cache). The figures are in extra_info.

The rules asserted: a profile holds one model plus what it keeps per layer and sample
(O(L x N x D)); the weight change holds a few tensors at a time, never a model; a swap
copies a segment into the host in place, never a second model.
"""

import json
import os

import pytest

from harness import dry_run

SMALL_SHAPE = {
    "model_type": "olmo2",
    "architectures": ["Olmo2ForCausalLM"],
    "vocab_size": 8192,
    "hidden_size": 256,
    "intermediate_size": 1024,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}
SIZES = dry_run.Sizes(profile_samples=16, token_samples=4, swap_items=4, lora_steps=1, lora_batch=2)
DTYPE = "bfloat16"
SLACK_MIB = 256  # allocator and framework overhead of a fresh process's first forward pass


@pytest.fixture(scope="module")
def shape_pair():
    named = os.environ.get("HARNESS_BENCH_SHAPE")
    name, shape = dry_run.load_shape(named) if named else ("bench-small", SMALL_SHAPE)
    config = dry_run.model_config(shape, dry_run.shape_tokenizer(shape))
    base_dir, sft_dir = dry_run.build_shape_pair(name, shape, DTYPE, progress=False)
    parameters = dry_run.parameter_count(config)
    layer_width = max(config.intermediate_size, config.hidden_size) * config.hidden_size
    return {
        "name": name,
        "base": base_dir,
        "sft": sft_dir,
        "parameters": parameters,
        "config": config,
        "model_mib": parameters * 2 / 2**20,
        "largest_layer_tensor_mib": layer_width * 4 / 2**20,
    }


def test_memory_and_time_of_each_stage_in_its_own_process(benchmark, shape_pair):
    def measure():
        results = {}
        for pair_of_stages in (("profile", "weight change"), ("swap", "LoRA")):  # two at a time: one per core
            running = {
                stage: dry_run.stage_in_fresh_process(
                    stage, shape_pair["base"], shape_pair["sft"], DTYPE, "cpu", SIZES, threads=1
                )
                for stage in pair_of_stages
            }
            results.update({stage: dry_run.fresh_stage_result(process) for stage, process in running.items()})
        return results

    results = benchmark.pedantic(measure, rounds=1, warmup_rounds=0)
    config = shape_pair["config"]
    kept_per_layer_mib = (config.num_hidden_layers + 1) * SIZES.profile_samples * config.hidden_size * 4 / 2**20
    grown = {stage: figures["peak_host_mib"] - figures["process_start_mib"] for stage, figures in results.items()}
    benchmark.extra_info.update(
        shape=shape_pair["name"],
        parameters=shape_pair["parameters"],
        model_mib=round(shape_pair["model_mib"]),
        **{f"{stage} seconds": round(figures["seconds"], 2) for stage, figures in results.items()},
        **{f"{stage} peak host MiB": round(figures["peak_host_mib"]) for stage, figures in results.items()},
        **{f"{stage} allocated MiB": round(figures["host_above_start_mib"]) for stage, figures in results.items()},
        lora_seconds_per_step=results["LoRA"]["detail"]["arms"]["full"]["seconds_per_step"],
        swap_copy_seconds=results["swap"]["detail"]["copy_seconds"],
        detail=json.dumps({stage: figures["detail"] for stage, figures in results.items()}, default=str),
    )
    # one model, plus O(L x N x D): never the second model of the pair
    assert grown["profile"] <= 1.25 * shape_pair["model_mib"] + 4 * kept_per_layer_mib + SLACK_MIB, grown
    # a few tensors of one layer at a time, never a model
    assert results["weight change"]["host_above_start_mib"] <= 8 * shape_pair["largest_layer_tensor_mib"] + 64
    assert results["weight change"]["host_above_start_mib"] < 0.5 * shape_pair["model_mib"] + 64
    # the segment is copied into the host in place: one model (and the saved segment), not two
    assert grown["swap"] <= 1.5 * shape_pair["model_mib"] + SLACK_MIB, grown
