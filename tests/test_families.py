"""Every model family the harness supports, on a tiny random model of its architecture: every stage runs,
a swap moves every tensor of a layer and restores the host bit for bit, a hybrid run from the host's kept
states gives the logits of a full pass, and the weight change reads fused projections and experts right."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import dry_run
from harness.measure import evaluate, swap
from harness.measure.weights import weight_change, weight_change_by_part
from harness.sources import layouts, models, synthetic

SHAPES = {path.stem: path for path in sorted(Path(__file__).parent.joinpath("data", "family_shapes").glob("*.json"))}
MIXTURES = [
    name for name in SHAPES if layouts.layout_of_type(json.loads(SHAPES[name].read_text())["model_type"]).experts
]
FUSED = ["phi3", "gpt_neox"]


@pytest.fixture(scope="module")
def family_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("families")))
        yield


def _pair(name: str) -> tuple[Path, Path]:
    shape = json.loads(SHAPES[name].read_text())
    return dry_run.build_shape_pair(name, shape, "float32", progress=False)


def test_the_tiny_shapes_cover_every_supported_family():
    types = {json.loads(path.read_text())["model_type"] for path in SHAPES.values()}
    families = {
        "llama",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3",
        "mistral",
        "mixtral",
        "olmo",
        "olmo2",
        "olmo3",
        "olmoe",
        "phi3",
        "smollm3",
        "granite",
        "gpt_neox",
    }
    assert families <= types <= set(layouts.SUPPORTED_MODEL_TYPES)


@pytest.mark.parametrize("name", SHAPES)
def test_every_stage_runs_on_a_tiny_model_of_each_family(name, family_cache):
    result = dry_run.run_dry(
        str(SHAPES[name]),
        dtype="float32",
        device="cpu",
        progress=False,
        sizes=dry_run.Sizes(profile_samples=6, token_samples=2, lora_steps=2),
    )
    assert [stage.name for stage in result.stages] == ["build", "profile", "weight change", "swap", "lm-eval", "LoRA"]
    change = result.stage("weight change").detail
    assert change["worst_relative_error"] < 1e-3  # the planted change, read back per layer and part
    assert ("experts" in change["parts"]) == (name in MIXTURES)
    assert all(arm["trainable"] > 0 for arm in result.stage("LoRA").detail["arms"].values())


def _records(count: int = 3) -> list[dict]:
    return [synthetic.gsm8k_record(0, "test", i) for i in range(count)]


@pytest.mark.parametrize("name", SHAPES)
def test_a_swap_moves_every_tensor_of_a_layer_and_restores_the_host_bit_for_bit(name, family_cache):
    base_dir, sft_dir = _pair(name)
    host = models.load_model(models.ModelRef(str(base_dir)))
    donor = dict(models.load_model(models.ModelRef(str(sft_dir))).named_parameters())  # as transformers loads it
    layout = layouts.layout_of(host)
    before = {key: value.detach().clone() for key, value in host.named_parameters()}
    layers = [1, 2]
    with swap.swapped(host, sft_dir, layers, head=True) as names:
        for key, value in host.named_parameters():
            in_block = key.startswith(tuple(layout.layer_prefix(layer) for layer in layers))
            if in_block:
                assert key in names and torch.equal(value, donor[key]), key  # norms, router, experts included
            elif key not in names:
                assert torch.equal(value, before[key]), key
        assert any(key.startswith(layout.final_norm) for key in names) or not list(
            layout.final_norm_module(host).parameters()
        )
    assert all(torch.equal(value, before[key]) for key, value in host.named_parameters())


@pytest.mark.parametrize("name", SHAPES)
def test_a_hybrid_run_from_the_hosts_kept_states_gives_the_logits_of_a_full_pass(name, family_cache):
    # the families that alternate sliding and full attention (window 8 here) choose masks by layer index
    base_dir, sft_dir = _pair(name)
    ref = models.ModelRef(str(base_dir))
    host, tokenizer = models.load_model(ref), models.load_tokenizer(ref)
    records = _records()
    prefix = swap.HostPrefix(host, [3])
    with prefix.capturing():
        evaluate.answer_log_likelihood(host, tokenizer, records)
    with swap.swapped(host, sft_dir, [3, 4]):
        full = evaluate.answer_log_likelihood(host, tokenizer, records)
        shortcut = evaluate.answer_log_likelihood(host, tokenizer, records, forward=prefix.forward_from(3))
    assert shortcut["per_item"] == pytest.approx(full["per_item"], abs=1e-4)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", FUSED)
def test_a_fused_projection_is_split_as_the_family_attention_reads_it(name):
    # Q = 0 and K = 0 both make every attention score 0 (uniform attention); V = 0 does something else. A
    # split that took the wrong rows for Q or K would not give the same model twice.
    from transformers import AutoModelForCausalLM

    shape = json.loads(SHAPES[name].read_text())
    config = dry_run.model_config(shape, dry_run.shape_tokenizer(shape))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    layout = layouts.layout_of(model)
    fused = next(module for module in layout.fused if "qkv" in layout.fused[module])
    attention = layout.decoder_layers(model)[0].get_submodule(fused)
    ids = torch.randint(0, 1000, (1, 12))
    tensors = [t for t in (attention.weight, attention.bias) if t is not None]
    original = [t.detach().clone() for t in tensors]

    def zeroed(projection):
        with torch.no_grad():
            for tensor, saved in zip(tensors, original, strict=True):
                tensor.copy_(saved)
                layout.split_rows(fused, tensor, config)[projection].zero_()
        return _logits(model, ids)

    no_query, no_key, no_value = zeroed("q_proj"), zeroed("k_proj"), zeroed("v_proj")
    assert torch.allclose(no_query, no_key, atol=1e-5)
    assert not torch.allclose(no_query, no_value, atol=1e-3)


@pytest.mark.parametrize("name", FUSED)
def test_weight_change_reads_one_projection_out_of_a_fused_module(name, family_cache, tmp_path):
    base_dir, _ = _pair(name)
    model = models.load_model(models.ModelRef(str(base_dir)))
    layout = layouts.layout_of(model)
    fused = next(module for module in layout.fused if "qkv" in layout.fused[module])
    weight = layout.decoder_layers(model)[2].get_submodule(fused).weight
    with torch.no_grad():
        rows = layout.split_rows(fused, weight, model.config)["v_proj"]
        rows.add_(torch.full_like(rows, 0.5))
    planted = 0.5 * rows.numel() ** 0.5
    model.save_pretrained(tmp_path / "sft")
    only_v = weight_change(base_dir, tmp_path / "sft", modules=("v_proj",))
    assert only_v[3] == pytest.approx(planted, rel=1e-5)
    assert all(value == 0 for layer, value in only_v.items() if layer != 3)
    assert all(value == 0 for value in weight_change(base_dir, tmp_path / "sft", ("q_proj", "k_proj")).values())
    assert weight_change(base_dir, tmp_path / "sft")[3] == pytest.approx(planted, rel=1e-5)  # eq. 1: Q, K, V, O


@pytest.mark.parametrize("name", MIXTURES)
def test_a_mixtures_router_and_experts_change_is_reported_apart_from_eq_1(name, family_cache, tmp_path):
    base_dir, _ = _pair(name)
    model = models.load_model(models.ModelRef(str(base_dir)))
    layout = layouts.layout_of(model)
    layer = layout.decoder_layers(model)[1]
    experts = [parameter for key, parameter in layer.named_parameters() if key in layout.experts]
    assert experts, "the fused expert parameters are where the layout says"
    with torch.no_grad():
        experts[0].add_(0.25)
        layer.get_submodule(layout.router).weight.add_(0.5)
    model.save_pretrained(tmp_path / "sft")  # written back one tensor per expert
    parts = weight_change_by_part(base_dir, tmp_path / "sft")
    assert parts["experts"][2] == pytest.approx(0.25 * experts[0].numel() ** 0.5, rel=1e-5)
    assert parts["router"][2] == pytest.approx(0.5 * layer.get_submodule(layout.router).weight.numel() ** 0.5, rel=1e-5)
    assert all(value == 0 for value in parts["eq1"].values())
    assert all(parts["experts"][other] == 0 for other in parts["experts"] if other != 2)


def test_an_unknown_family_is_refused_in_one_line_naming_the_supported_ones():
    from transformers import AutoConfig

    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, vocab_size=64)
    with pytest.raises(models.UnsupportedModelError) as refused:
        models.check_supported_layout(config, "my-gpt2")
    message = str(refused.value)
    assert "\n" not in message and "'gpt2'" in message
    assert all(model_type in message for model_type in ("llama", "gpt_neox", "qwen3_moe", "phi3"))
    with pytest.raises(layouts.UnknownFamilyError, match="supported: "):
        layouts.layout_of_type("gpt2")


@pytest.mark.parametrize("name", MIXTURES)
def test_a_mixtures_profile_reports_router_and_experts_change_per_layer(name, family_cache):
    from harness.measure import profile

    base_dir, sft_dir = _pair(name)
    resolved = models.resolve_pair(models.custom_pair(str(base_dir), str(sft_dir), dtype="float32"), progress=False)
    result = profile.profile_pair(
        resolved, profile.ProfileOptions(pooled_samples=6, token_samples=2), device="cpu", progress=False
    )
    for column in ("weight_change", "router_change", "experts_change"):  # eq. 1, and the mixture's apart
        assert result.pair[column].iloc[1:].gt(0).all() and pd.isna(result.pair[column].iloc[0])
    assert result.meta["pair"]["layout"] == layouts.layout_of_type(result.meta["pair"]["model_type"]).family


def test_a_mixture_donor_missing_an_expert_is_refused_in_one_line_and_the_host_is_restored(family_cache, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    base_dir, sft_dir = _pair("mixtral")
    broken = tmp_path / "broken"
    shutil.copytree(sft_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    missing = "model.layers.1.block_sparse_moe.experts.2.w3.weight"
    del tensors[missing]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    host = models.load_model(models.ModelRef(str(base_dir)))
    before = {key: value.detach().clone() for key, value in host.named_parameters()}
    with pytest.raises(swap.DonorMismatchError) as refused:
        with swap.swapped(host, broken, [1]):
            pass
    assert "\n" not in str(refused.value) and "mlp.experts.gate_up_proj" in str(refused.value)
    assert all(torch.equal(value, before[key]) for key, value in host.named_parameters())


def test_an_adapter_made_for_another_base_is_refused_in_one_line(family_cache, tmp_path):
    from peft import LoraConfig, get_peft_model

    from harness.sources import adapters

    llama_dir, _ = _pair("llama")
    wider = {**json.loads(SHAPES["llama"].read_text()), "hidden_size": 96, "intermediate_size": 128}
    other_dir, _ = dry_run.build_shape_pair("llama-wider", wider, "float32", progress=False)
    model = models.load_model(models.ModelRef(str(other_dir)))  # its Q/K/V have other shapes
    with adapters.peft_quietly():
        wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    wrapped.save_pretrained(tmp_path / "adapter")
    with pytest.raises(adapters.AdapterError, match="does not fit the base"):
        adapters.merged_directory(llama_dir, "llama", tmp_path / "adapter", progress=False)
