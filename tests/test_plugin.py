"""The pytest plugin as a user meets it: selection by marker, skips that say what to do."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _pytest(*args, env_extra=None, tmp_path):
    """pytest in a fresh process: for the runs that point the Hugging Face cache elsewhere, which the hub
    library reads once, at import."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, *_reported(tmp_path), "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )


def _reported(tmp_path):
    """Reports into ``tmp_path``, skip reasons shown."""
    return ("--report-dir", str(tmp_path / "reports"), "-rs")


def test_a_real_pair_offline_is_skipped_with_what_to_do(tmp_path):
    import huggingface_hub.constants

    empty_cache = tmp_path / "hub"
    empty_cache.mkdir()
    run = _pytest(
        "suites/test_c2_weight_change.py",
        "-m",
        "olmo2_7b",
        tmp_path=tmp_path,
        env_extra={"HF_HUB_CACHE": str(empty_cache), "HF_HOME": str(tmp_path / "hf")},
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 skipped" in run.stdout
    assert "allenai/OLMo-2-1124-7B" in run.stdout and "hf download" in run.stdout
    assert huggingface_hub.constants.HF_HUB_CACHE != str(empty_cache)  # the parent process is untouched


def test_without_a_marker_real_pairs_are_deselected_and_the_way_to_select_them_is_shown(run_suites, tmp_path):
    run = run_suites("suites/test_c2_weight_change.py", "--collect-only", "-q", *_reported(tmp_path))
    assert "tiny_olmo2" in run.stdout and "olmo2_7b" not in run.stdout.split("deselected")[0]
    assert "select a pair with -m olmo2_1b" in run.stdout


def test_the_custom_pair_needs_base_and_sft(run_suites, tmp_path):
    run = run_suites("suites/test_c2_weight_change.py", "-m", "custom", *_reported(tmp_path))
    assert "needs --base and --sft" in run.stdout


def test_a_pair_named_with_base_and_sft_runs_alone_and_an_unloadable_one_fails(tmp_path):
    missing = str(tmp_path / "DOES_NOT_EXIST")
    run = _pytest(
        "suites/test_c2_weight_change.py",
        "--base",
        missing,
        "--sft",
        missing,
        tmp_path=tmp_path,
        env_extra={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf")},
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert "the pair named with --base/--sft cannot be loaded" in run.stdout
    assert "During handling" not in run.stdout  # the message alone, not the error it replaces
    assert "[custom]" in run.stdout and "[tiny_olmo2]" not in run.stdout  # --base/--sft select the custom pair


def test_a_marker_expression_that_names_no_real_pair_selects_none(run_suites, tmp_path):
    run = run_suites("suites/test_c2_weight_change.py", "-m", "not slow", "--collect-only", "-q", *_reported(tmp_path))
    selected = run.stdout.split("deselected")[0]
    assert "tiny_olmo2" in selected
    assert not any(f"[{name}]" in selected for name in ("olmo2_1b", "olmo2_7b", "olmo2_32b", "mistral_7b", "custom"))


def test_the_lora_suites_of_a_pair_that_cannot_be_had_here_say_so_rather_than_ask_for_tune(tmp_path):
    run = _pytest(
        "suites/test_c4_mid_block_lora.py",
        "suites/test_c8_retention.py",
        "-m",
        "olmo2_7b",
        tmp_path=tmp_path,
        env_extra={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf")},
    )
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert run.returncode == 0 and len(skips) >= 3, run.stdout[-2000:]
    assert all("pair 'olmo2_7b' unavailable" in line and "--tune" not in line for line in skips)


def test_base_without_sft_is_a_usage_error(run_suites, tmp_path):
    run = run_suites("suites/test_c2_weight_change.py", "--base", "somewhere", *_reported(tmp_path))
    assert run.returncode == 4 and "--base needs --sft" in run.stderr


def test_a_refused_pair_fails_each_test_with_one_line_and_no_traceback(run_suites, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "gpt2")
    run = run_suites(
        "suites/test_c1_cka_plateau.py",
        "suites/test_c2_weight_change.py",
        "--base",
        str(tmp_path / "gpt2"),
        "--sft",
        str(tmp_path / "gpt2"),
        *_reported(tmp_path),
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert run.stdout.count("custom is refused: ") >= 2 and "decoder-only causal LMs" in run.stdout
    assert "Traceback" not in run.stdout and "raise " not in run.stdout


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_pair_whose_swaps_are_not_finite_fails_each_swap_test_with_one_line(micro_pair, run_suites, tmp_path):
    from harness.sources import models

    model = models.load_model(models.ModelRef(str(micro_pair.sft_dir)), device="cpu")
    with torch.no_grad():
        for weight in (model.model.layers[1].mlp.up_proj.weight, model.model.layers[1].mlp.down_proj.weight):
            weight.fill_(3e38)  # finite, but the products overflow float32
    model.save_pretrained(tmp_path / "broken")
    models.load_tokenizer(models.ModelRef(str(micro_pair.sft_dir))).save_pretrained(tmp_path / "broken")
    run = run_suites(
        "suites/test_c3_layer_swap.py",
        "--base",
        str(micro_pair.base_dir),
        "--sft",
        str(tmp_path / "broken"),
        *_reported(tmp_path),
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert run.stdout.count("custom is refused: ") == 6 and "non-finite" in run.stdout  # one line per test
    assert "Traceback" not in run.stdout and "raise " not in run.stdout


def test_the_claims_config_decides_which_segment_counts_are_collected(run_suites, tmp_path):
    """C3.segment_counts and C4.inverted_u_counts, not the suites, say which M each suite runs."""
    from harness import config
    from pytest_layerwise_sft import plugin

    assert plugin.configured_values(config.load_config(), "C3", "segment_counts") == [3, 5, 10]
    run = run_suites(
        "suites/test_c3_layer_swap.py",
        "suites/test_c4_mid_block_lora.py",
        "--collect-only",
        "-q",
        "--set",
        "C3.segment_counts=[3]",
        "--set",
        "C4.inverted_u_counts=[4]",
        *_reported(tmp_path),
    )
    assert run.returncode == 0, run.stdout[-2000:]
    collected = [line for line in run.stdout.splitlines() if "tiny_olmo2" in line and "::" in line]
    swaps = [line for line in collected if "test_c3" in line]
    assert swaps and all("tiny_olmo2-3-" in line for line in swaps)
    inverted_u = [line for line in collected if "inverted_u" in line]
    assert inverted_u and all("-4]" in line for line in inverted_u)
