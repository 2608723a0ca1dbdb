"""An SFT published as a PEFT LoRA adapter on its base: merged once for every stage, its weight change read
from the adapter alone, its config in the report."""

import json
import re
import warnings

import pytest
import torch

from harness.measure.weights import weight_change
from harness.sources import adapters, models


def _adapter(base_dir, folder, layers=(0, 2), targets=("q_proj", "v_proj", "o_proj"), seed=0, **extra):
    """A LoRA adapter on ``base_dir`` with random (non-zero) A and B, as a fine-tune would leave it."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = models.load_model(models.ModelRef(str(base_dir)))
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=list(targets),
        layers_to_transform=list(layers),
        init_lora_weights=False,
        **extra,
    )
    with adapters.peft_quietly():
        wrapped = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    wrapped.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
@pytest.mark.parametrize("extra", [{}, {"use_rslora": True, "rank_pattern": {"v_proj": 2}}], ids=["lora", "rslora"])
def test_the_weight_change_from_the_adapter_alone_equals_the_merged_models(micro_pair, isolated_cache, tmp_path, extra):
    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter", **extra)
    merged = adapters.merged_directory(micro_pair.base_dir, "micro", folder, progress=False)
    from_adapter = adapters.adapter_weight_change(folder, micro_pair.base_dir)["eq1"]
    from_merged = weight_change(micro_pair.base_dir, merged)
    assert sorted(from_adapter) == sorted(from_merged) == [1, 2, 3]
    assert from_adapter[2] == 0.0 and from_merged[2] == pytest.approx(0.0, abs=1e-6)  # layer index 1: no adapter
    for layer in (1, 3):
        assert from_adapter[layer] > 0
        assert from_adapter[layer] == pytest.approx(from_merged[layer], rel=1e-4)
    only_q = adapters.adapter_weight_change(folder, micro_pair.base_dir, modules=("q_proj",))["eq1"]
    assert only_q[1] == pytest.approx(weight_change(micro_pair.base_dir, merged, modules=("q_proj",))[1], rel=1e-4)


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_merging_an_adapter_shows_none_of_peft_s_expected_warnings_and_lets_others_pass(
    micro_pair, isolated_cache, tmp_path
):
    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapters.merged_directory(micro_pair.base_dir, "micro", folder, progress=False)
        with adapters.peft_quietly():
            warnings.warn("another library's own warning", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "is_gradient_checkpointing" in m]
    assert "another library's own warning" in messages


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_an_adapter_sft_is_merged_once_and_its_config_is_recorded(micro_pair, isolated_cache, tmp_path):
    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter")
    spec = models.custom_pair(str(micro_pair.base_dir), str(folder), dtype="float32")
    assert models.unavailable_reason(spec) is None
    resolved = models.resolve_pair(spec, progress=False)
    assert resolved.adapter["r"] == 4 and resolved.adapter["lora_alpha"] == 8
    assert resolved.adapter["source"] == str(folder) and resolved.adapter_dir == folder
    merged = next(path for path in isolated_cache.glob("merged-adapters/*") if path.is_dir())
    stamp = (merged / "model.safetensors").stat().st_mtime_ns
    again = models.resolve_pair(spec, progress=False)
    assert again.sft == resolved.sft and (merged / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_an_adapter_sft_profiles_verifies_and_swaps(micro_pair, verify_small, tmp_path):
    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter")
    section = verify_small(micro_pair.base_dir, folder)
    recorded = section["pair"]["sft_adapter"]
    assert (recorded["r"], recorded["lora_alpha"], recorded["source"]) == (4, 8, str(folder))
    assert len(section["swaps"]["base_with_sft_block"]["host"]["per_item"]) == 6
    change = section["verdicts"]["C2"]["evidence"]["weight_change"]  # from the adapter: exactly 0 where it is not
    assert change[2] == 0.0 and change[1] > 0 and change[3] > 0


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_an_adapter_given_alone_names_its_base(micro_pair, isolated_cache, tmp_path, capsys, pytester):
    from harness import cli
    from harness.output import reports

    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter")
    assert models.pair_locations(None, str(folder)) == (str(micro_pair.base_dir), str(folder))
    assert models.pair_locations("b", "s") == ("b", "s") and models.pair_locations(None, None) is None
    out = tmp_path / "profile.json"
    argv = ["profile", "--sft", str(folder), "--pooled-samples", "40", "--token-samples", "8", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    pair = reports.load_report(out)["pair"]
    assert pair["base"] == str(micro_pair.base_dir) and pair["sft_adapter"]["source"] == str(folder)
    # the pytest plugin reads --sft alone the same way: the custom pair is selected with its base
    collected = pytester.runpytest("--sft", str(folder), "--co", "-q", "-p", "no:cacheprovider")
    assert collected.ret == 5, collected.stdout.str()  # no suite in this folder, but no usage error either
    (config := tmp_path / "adapter_config_without_base").mkdir()
    settings = json.loads((folder / "adapter_config.json").read_text())
    (config / "adapter_config.json").write_text(json.dumps({**settings, "base_model_name_or_path": None}))
    (config / "adapter_model.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes())
    with pytest.raises(models.BadInputError, match="does not name its base .* give --base"):
        models.pair_locations(None, str(config))
    refused = pytester.runpytest("--sft", str(config), "-p", "no:cacheprovider")
    assert refused.ret == 4 and "does not name its base" in refused.stderr.str()


def test_an_adapter_folder_without_weights_is_refused_in_one_line(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    reason = models.unavailable_reason(models.custom_pair(str(tmp_path / "adapter"), str(tmp_path / "adapter")))
    assert "adapter_model.safetensors" in reason and "\n" not in reason
    with pytest.raises(adapters.AdapterError, match="no adapter_model"):
        adapters.read_config(tmp_path / "adapter")


def _damage_adapter_config(folder):
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA",')


def _cut_adapter_weights_short(folder):
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _target_modules_the_base_lacks(folder):
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["query_key_value"]}))


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_damage_adapter_config, r"adapter_config.json is not valid JSON"),
        (_cut_adapter_weights_short, r"adapter_model.safetensors is not a complete safetensors file"),
        (_target_modules_the_base_lacks, r"does not fit the base .*none of its target modules \['query_key_value'\]"),
    ],
    ids=["config_not_json", "weights_cut_short", "targets_not_in_base"],
)
def test_a_damaged_adapter_is_refused_in_one_line_before_anything_is_merged(
    micro_pair, isolated_cache, tmp_path, capsys, damage, expected
):
    from harness import cli

    damage(_adapter(micro_pair.base_dir, tmp_path / "adapter"))
    out = tmp_path / "report.json"
    code = cli.main(
        ["profile", "--base", str(micro_pair.base_dir), "--sft", str(tmp_path / "adapter"), "--out", str(out)]
    )
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message.startswith("error: ") and re.search(expected, message)
    assert not out.exists() and not list((isolated_cache / "merged-adapters").glob("[!.]*"))  # no merged model


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_an_adapter_named_by_hub_id_is_found_in_the_hub_cache_offline(
    micro_pair, isolated_cache, tmp_path, monkeypatch
):
    import shutil

    import huggingface_hub.constants

    folder = _adapter(micro_pair.base_dir, tmp_path / "adapter")
    hub = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--someorg--tiny-sft-lora"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = models.custom_pair(str(micro_pair.base_dir), "someorg/tiny-sft-lora", dtype="float32")
    assert models.unavailable_reason(spec) is None
    # given alone, the cached adapter names its base
    assert models.pair_locations(None, "someorg/tiny-sft-lora") == (str(micro_pair.base_dir), "someorg/tiny-sft-lora")
    resolved = models.resolve_pair(spec, progress=False)
    assert resolved.adapter["source"] == "someorg/tiny-sft-lora"
    assert weight_change(micro_pair.base_dir, models.checkpoint_directory(resolved.sft))[1] > 0
    missing = models.custom_pair(str(micro_pair.base_dir), "someorg/not-cached")
    assert "not in the Hugging Face cache" in models.unavailable_reason(missing)
