"""A pair whose SFT added tokens (chat templates do): its vocabulary is larger than the base's, every stage
still compares the decoder layers, and the report says the vocabularies differ."""

import pytest

from harness.measure import swap
from harness.sources import models


def _sft_with_added_tokens(base_dir, folder):
    model = models.load_model(models.ModelRef(str(base_dir)))
    tokenizer = models.load_tokenizer(models.ModelRef(str(base_dir)))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]})
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_pair_whose_sft_added_tokens_runs_every_stage_and_the_report_says_so(micro_pair, verify_small, tmp_path):
    sft = _sft_with_added_tokens(micro_pair.sft_dir, tmp_path / "sft")
    base_vocabulary = models.load_config(models.ModelRef(str(micro_pair.base_dir))).vocab_size
    assert models.load_config(models.ModelRef(str(sft))).vocab_size > base_vocabulary
    section = verify_small(micro_pair.base_dir, sft)
    assert "vocabularies differ" in section["pair"]["vocabulary"]
    assert f"base {base_vocabulary} tokens" in section["pair"]["vocabulary"]
    assert len(section["swaps"]["sft_with_base_block"]["host"]["per_item"]) == 6


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_head_swap_across_vocabularies_is_refused_in_one_line(micro_pair, tmp_path):
    sft = _sft_with_added_tokens(micro_pair.sft_dir, tmp_path / "sft")
    host = models.load_model(models.ModelRef(str(micro_pair.base_dir)))
    with pytest.raises(swap.DonorMismatchError, match="vocabularies differ"):
        with swap.swapped(host, sft, [0], head=True):
            pass
    with swap.swapped(host, sft, [0]):  # the layers alone swap as ever
        pass
