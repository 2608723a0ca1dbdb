import copy
import json
import re

import pytest
import torch
import transformers

from harness.sources import models


def _save_tiny_model(directory, family="olmo2", layers=2, hidden=32):
    config_class = transformers.Olmo2Config if family == "olmo2" else transformers.MistralConfig
    extra = {} if family == "olmo2" else {"sliding_window": None}
    config = config_class(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **extra,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    _word_tokenizer(config.vocab_size).save_pretrained(directory)  # a checkpoint folder as saved: with its tokenizer
    return directory


def _word_tokenizer(size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers

    core = Tokenizer(models.WordLevel({f"w{i}": i for i in range(size - 1)} | {"<unk>": size - 1}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<unk>")


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache_dir = tmp_path / "hub"
    cache_dir.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache_dir


def _plant_snapshot(cache_dir, repo_id, files, commit="0123456789abcdef0123456789abcdef01234567"):
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, content in files.items():
        (snapshot / name).write_text(content)
    return snapshot


def test_registry_names_the_papers_pairs():
    expected = {
        "olmo2_1b": ("allenai/OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B-SFT"),
        "olmo2_7b": ("allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-SFT"),
        "olmo2_13b": ("allenai/OLMo-2-1124-13B", "allenai/OLMo-2-1124-13B-SFT"),
        "olmo2_32b": ("allenai/OLMo-2-0325-32B", "allenai/OLMo-2-0325-32B-SFT"),
        "mistral_7b": ("mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.1"),
        "olmo3_7b": ("allenai/Olmo-3-1025-7B", "allenai/Olmo-3-7B-Instruct-SFT"),
        "olmoe_1b_7b": ("allenai/OLMoE-1B-7B-0924", "allenai/OLMoE-1B-7B-0924-SFT"),
        "llama31_8b": ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
        "qwen25_7b": ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct"),
        "qwen3_8b": ("Qwen/Qwen3-8B-Base", "Qwen/Qwen3-8B"),
        "gemma2_9b": ("google/gemma-2-9b", "google/gemma-2-9b-it"),
        "gemma3_12b": ("google/gemma-3-12b-pt", "google/gemma-3-12b-it"),
    }
    for name, (base, sft) in expected.items():
        spec = models.get_spec(name)
        assert (spec.base.location, spec.sft.location) == (base, sft)
        assert not spec.is_built_locally
    assert set(models.TINY_PAIRS) == {"tiny_olmo2", "tiny_mistral"}
    assert {models.get_spec(n).family for n in models.TINY_PAIRS} == {"olmo2", "mistral"}
    assert set(models.REGISTRY) == set(expected) | set(models.TINY_PAIRS)


def test_unknown_pair_lists_the_registered_ones():
    with pytest.raises(KeyError, match="olmo2_7b.*--base and --sft"):
        models.get_spec("llama_9000")


def test_offline_and_uncached_pair_is_skipped_with_what_to_do(empty_hub_cache):
    reason = models.unavailable_reason(models.get_spec("olmo2_7b"))
    assert reason is not None
    for needed in (
        "allenai/OLMo-2-1124-7B",
        "allenai/OLMo-2-1124-7B-SFT",
        "hf download",
        "HF_HUB_OFFLINE=1",
        "--base DIR --sft DIR",
    ):
        assert needed in reason
    with pytest.raises(models.ModelUnavailableError, match="not in the Hugging Face cache"):
        models.resolve_pair(models.get_spec("olmo2_7b"))


def test_gated_pair_says_how_to_get_access(empty_hub_cache):
    assert "hf auth login" in models.unavailable_reason(models.get_spec("mistral_7b"))


def test_cached_pair_is_available_offline_without_download(empty_hub_cache):
    for repo in ("allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-SFT"):
        _plant_snapshot(empty_hub_cache, repo, {"config.json": "{}", "model.safetensors": "x"})
    assert models.unavailable_reason(models.get_spec("olmo2_7b")) is None
    fingerprint = models.weights_fingerprint(models.get_spec("olmo2_7b").base)
    assert fingerprint.endswith("@0123456789abcdef0123456789abcdef01234567")


def test_cached_pair_with_a_missing_shard_is_unavailable(empty_hub_cache):
    index = json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    )
    for repo in ("allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B-SFT"):
        _plant_snapshot(
            empty_hub_cache,
            repo,
            {"config.json": "{}", "model.safetensors.index.json": index, "model-00001-of-00002.safetensors": "x"},
        )
    assert models.unavailable_reason(models.get_spec("olmo2_7b")) is not None


def test_mismatched_pair_is_refused_with_the_differences(tmp_path):
    base = _save_tiny_model(tmp_path / "base", layers=2)
    sft = _save_tiny_model(tmp_path / "sft", layers=3)
    with pytest.raises(models.PairMismatchError, match=r"num_hidden_layers: 2 vs 3"):
        models.resolve_pair(models.custom_pair(str(base), str(sft)))


def test_pairs_of_different_families_are_refused(tmp_path):
    base = _save_tiny_model(tmp_path / "base", family="olmo2")
    sft = _save_tiny_model(tmp_path / "sft", family="mistral")
    with pytest.raises(models.PairMismatchError, match="model_type"):
        models.resolve_pair(models.custom_pair(str(base), str(sft)))


def test_local_pair_resolves_and_loads_through_the_same_path(tmp_path):
    base = _save_tiny_model(tmp_path / "base")
    sft = _save_tiny_model(tmp_path / "sft")
    resolved = models.resolve_pair(models.custom_pair(str(base), str(sft), dtype="float32"))
    model = models.load_model(resolved.sft, dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training
    assert models.weights_fingerprint(resolved.base).startswith("sha256:")


def test_a_local_checkpoint_saved_without_its_tokenizer_is_refused_before_any_work(tmp_path):
    base = _save_tiny_model(tmp_path / "base")
    sft = _save_tiny_model(tmp_path / "sft")
    for name in models.TOKENIZER_FILES:
        (sft / name).unlink(missing_ok=True)
    with pytest.raises(models.ModelUnavailableError, match=r"sft has no tokenizer .*tokenizer.save_pretrained"):
        models.resolve_pair(models.custom_pair(str(base), str(sft)))


def test_a_sharded_checkpoint_missing_a_shard_names_it(tmp_path):
    base = _save_tiny_model(tmp_path / "base")
    sft = tmp_path / "sft"
    models.load_model(models.ModelRef(str(base)), device="cpu").save_pretrained(sft, max_shard_size="20KB")
    shards = sorted(sft.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[1].unlink()
    reason = models.unavailable_reason(models.custom_pair(str(base), str(sft)))
    assert f"lacks {shards[1].name} of the {len(shards)} shards its model.safetensors.index.json names" in reason


def test_a_folder_without_config_or_weights_says_which_is_missing(tmp_path):
    base = _save_tiny_model(tmp_path / "base")
    (tmp_path / "empty").mkdir()
    assert "empty has no config.json" in models.unavailable_reason(
        models.custom_pair(str(base), str(tmp_path / "empty"))
    )
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text((base / "config.json").read_text())
    reason = models.unavailable_reason(models.custom_pair(str(base), str(tmp_path / "config_only")))
    assert "config_only has no weights (no *.safetensors, no pytorch_model.bin)" in reason


def test_missing_local_directory_is_reported(tmp_path):
    reason = models.unavailable_reason(models.custom_pair(str(tmp_path / "nope"), str(tmp_path / "nope2")))
    assert "is not a directory" in reason


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("float13")
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype(torch.float8_e5m2)
    assert models.resolve_dtype("bfloat16") is torch.bfloat16
    assert models.resolve_dtype(torch.float64) is torch.float64 and models.resolve_dtype("auto") == "auto"


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_model_of_another_layout_is_refused_before_any_work(tmp_path, capsys, family):
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    from harness import cli

    if family == "bert":
        model = BertForMaskedLM(
            BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100)
        )
    else:
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    model.save_pretrained(tmp_path / family)
    capsys.readouterr()  # the save's own progress output
    out = tmp_path / "report.json"
    code = cli.main(["profile", "--base", str(tmp_path / family), "--sft", str(tmp_path / family), "--out", str(out)])
    message = capsys.readouterr().err
    assert code == 2 and "decoder-only causal LMs" in message and family in message
    assert message.startswith("error: ") and message.count("\n") == 1  # one line, no traceback
    assert not out.exists()


def test_evaluating_a_model_with_nan_weights_is_an_error_not_a_score(micro_pair, tmp_path, capsys):
    from harness import cli

    model = models.load_model(models.ModelRef(str(micro_pair.sft_dir)), device="cpu")
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "broken")
    models.load_tokenizer(models.ModelRef(str(micro_pair.sft_dir))).save_pretrained(tmp_path / "broken")
    code = cli.main(
        [
            "evaluate",
            "--base",
            str(micro_pair.base_dir),
            "--sft",
            str(tmp_path / "broken"),
            "--tasks",
            "gsm8k_local",
            "--limit",
            "2",
            "--max_gen_toks",
            "8",
            "--out",
            str(tmp_path / "scores.json"),
        ]
    )
    message = capsys.readouterr().err
    assert code == 2 and "non-finite" in message and "layers.0.mlp.down_proj.weight" in message
    assert not (tmp_path / "scores.json").exists()


def _copy(micro_pair, tmp_path, side="sft"):
    import shutil

    return shutil.copytree(getattr(micro_pair, f"{side}_dir"), tmp_path / side)


def test_a_truncated_safetensors_file_is_named(micro_pair, tmp_path, capsys):
    from harness import cli

    sft = _copy(micro_pair, tmp_path)
    (shard,) = sft.glob("*.safetensors")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    code = cli.main(
        ["profile", "--base", str(micro_pair.base_dir), "--sft", str(sft), "--out", str(tmp_path / "report.json")]
    )
    message = capsys.readouterr().err
    assert code == 2 and str(shard) in message and "truncated or corrupt" in message
    assert not (tmp_path / "report.json").exists()


def test_a_checkpoint_missing_tensors_its_config_needs_is_refused_not_filled_with_random_values(
    micro_pair, isolated_cache, tmp_path, capsys
):
    from safetensors.torch import load_file, save_file

    from harness import cli

    sft = _copy(micro_pair, tmp_path)
    (shard,) = sft.glob("*.safetensors")
    tensors = load_file(shard)
    dropped = sorted(name for name in tensors if name.startswith("model.layers.1.mlp."))
    assert len(dropped) == 3
    save_file({name: t for name, t in tensors.items() if name not in dropped}, shard, metadata={"format": "pt"})
    code = cli.main(
        ["profile", "--base", str(micro_pair.base_dir), "--sft", str(sft), "--out", str(tmp_path / "report.json")]
    )
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message.startswith("error: ") and str(sft) in message
    assert "lacks 3 of the weights" in message and dropped[0] in message and "random values" in message
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize(
    ("setting", "change", "expected"),
    [
        ("intermediate_size", 16, "do not have the shapes its config.json gives them"),
        # a layer count cut short: transformers would run the first layers and leave the rest out
        ("num_hidden_layers", -1, "tensors in its decoder layers that its config.json's architecture has no place for"),
    ],
    ids=["other_shapes", "fewer_layers"],
)
def test_a_config_that_does_not_fit_its_weights_is_refused_in_one_line(
    micro_pair, isolated_cache, tmp_path, capsys, setting, change, expected
):
    from harness import cli

    copies = {side: _copy(micro_pair, tmp_path, side) for side in ("base", "sft")}
    for folder in copies.values():  # both sides alike, so that the pair itself matches
        config = json.loads((folder / "config.json").read_text())
        config[setting] += change
        (folder / "config.json").write_text(json.dumps(config))
    code = cli.main(
        ["profile", "--base", str(copies["base"]), "--sft", str(copies["sft"]), "--out", str(tmp_path / "report.json")]
    )
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message.startswith("error: ") and str(copies["base"]) in message and expected in message
    if setting == "num_hidden_layers":
        assert "model.layers.2." in message  # the micro pair's third and last layer
    assert not (tmp_path / "report.json").exists()


def _damage_config_json(folder):
    (folder / "config.json").write_text('{"model_type": "olmo2", "hidden_size": 32,')  # cut short


def _give_an_unknown_model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "olmo9"}))


def _damage_tokenizer_json(folder):
    (folder / "tokenizer.json").write_text('{"version": "1.0", "truncated')


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_damage_config_json, r"has a config that transformers \S+ cannot read \(OSError: .*not a valid JSON file"),
        (_give_an_unknown_model_type, r"has a config that transformers \S+ cannot read \(ValueError: .*`olmo9`"),
        (_damage_tokenizer_json, r"has a tokenizer that cannot be loaded \(JSONDecodeError: "),
    ],
    ids=["config_not_json", "unknown_model_type", "tokenizer_not_json"],
)
@pytest.mark.parametrize("side", ["base", "sft"])
@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_config_or_tokenizer_transformers_cannot_read_is_refused_in_one_line_before_any_work(
    micro_pair, isolated_cache, tmp_path, capsys, damage, expected, side
):
    from harness import cli

    folders = {"base": micro_pair.base_dir, "sft": micro_pair.sft_dir, side: _copy(micro_pair, tmp_path, side)}
    damage(folders[side])
    out = tmp_path / "report.json"
    code = cli.main(["profile", "--base", str(folders["base"]), "--sft", str(folders["sft"]), "--out", str(out)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message.startswith("error: " + str(folders[side])) and re.search(expected, message)
    assert not out.exists() and not (isolated_cache / "profiles").exists()  # refused before any model ran


def _segment_otherwise(folder):
    """The SFT's tokenizer with most of its merges dropped: the same vocabulary, other tokens for the same text."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["merges"] = tokenizer["model"]["merges"][: len(tokenizer["model"]["merges"]) // 10]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_pair_whose_tokenizers_encode_text_differently_is_refused_before_any_work(
    micro_pair, isolated_cache, tmp_path, capsys
):
    from harness import cli

    sft = _copy(micro_pair, tmp_path, "sft")
    _segment_otherwise(sft)
    out = tmp_path / "report.json"
    code = cli.main(["profile", "--base", str(micro_pair.base_dir), "--sft", str(sft), "--out", str(out)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and re.fullmatch(
        f"error: {micro_pair.base_dir} and {sft} tokenize the same text differently "
        r"\('A baker sells 48 loaves on Monday and 3/'\.\.\.: \d+ against \d+ tokens, first apart at token \d+\)\. "
        "A layer-wise comparison feeds both models the same tokens: .*",
        message,
    )
    assert not out.exists() and not (isolated_cache / "profiles").exists()


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_tokens_added_for_a_chat_template_leave_the_pairs_tokenization_alike(micro_pair):
    base = models.load_tokenizer(models.ModelRef(str(micro_pair.base_dir)))
    sft = models.load_tokenizer(models.ModelRef(str(micro_pair.sft_dir)))
    sft.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    models.check_same_tokenization(base, sft)
    segmented_otherwise = copy.deepcopy(sft)
    segmented_otherwise.add_tokens(["baker"])  # a word of the samples now one token in the SFT's vocabulary
    with pytest.raises(models.PairMismatchError, match="tokenize the same text differently"):
        models.check_same_tokenization(base, segmented_otherwise)


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_an_adapter_on_a_base_whose_config_cannot_be_read_is_refused_before_the_merge(
    micro_pair, isolated_cache, tmp_path
):
    import peft

    from harness.sources import adapters

    base = _copy(micro_pair, tmp_path, "base")
    model = models.load_model(models.ModelRef(str(base)), device="cpu")
    with adapters.peft_quietly():
        adapter = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    adapter.save_pretrained(tmp_path / "adapter")
    _damage_config_json(base)
    with pytest.raises(models.UnreadableCheckpointError, match="base has a config that transformers"):
        models.resolve_pair(models.custom_pair(str(base), str(tmp_path / "adapter")))
    assert not (isolated_cache / "merged-adapters").exists()


def test_a_checkpoint_with_only_pytorch_model_bin_is_refused_at_the_availability_check(micro_pair, tmp_path):
    sft = _copy(micro_pair, tmp_path)
    model = models.load_model(models.ModelRef(str(sft)), device="cpu")
    for shard in sft.glob("*.safetensors"):
        shard.unlink()
    torch.save(model.state_dict(), sft / "pytorch_model.bin")
    reason = models.unavailable_reason(models.custom_pair(str(micro_pair.base_dir), str(sft)))
    assert "pytorch_model.bin only" in reason and "save_pretrained" in reason


def test_an_output_path_that_is_a_directory_is_refused_before_any_work(micro_pair, tmp_path, capsys, monkeypatch):
    from harness import cli
    from harness.measure import profile

    monkeypatch.setattr(profile, "profile_pair", lambda *a, **k: pytest.fail("the profile ran"))
    code = cli.main(
        ["profile", "--base", str(micro_pair.base_dir), "--sft", str(micro_pair.sft_dir), "--out", str(tmp_path)]
    )
    assert code == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_dtype_whose_fused_attention_cannot_run_on_this_cpu_is_attended_eagerly(micro_pair, monkeypatch):
    monkeypatch.setattr(models, "cpu_attention_runs", lambda dtype: dtype != torch.bfloat16)
    base = models.ModelRef(str(micro_pair.base_dir))
    assert models.load_model(base, dtype="bfloat16", device="cpu").config._attn_implementation == "eager"
    assert models.load_model(base, dtype="float32", device="cpu").config._attn_implementation == "sdpa"


FORWARD_IN_BFLOAT16 = """
import sys, torch
from harness.sources import models
model = models.load_model(models.ModelRef(sys.argv[1]), dtype="bfloat16", device="cpu")
with torch.no_grad():
    logits = model(torch.ones(1, 200, dtype=torch.long)).logits
assert torch.isfinite(logits.float()).all()
"""


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_bfloat16_model_runs_on_the_cpu_with_the_kernels_of_an_older_cpu_selected(micro_pair):
    """ATEN_CPU_CAPABILITY=avx2 (a setting that makes builds alike across CPUs): on an AMX CPU, torch's fused
    bfloat16 attention then fails beyond a few dozen tokens, so the model must attend eagerly there."""
    import os
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", FORWARD_IN_BFLOAT16, str(micro_pair.base_dir)],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
