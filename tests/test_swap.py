"""Layer swaps: segments, in-place swapping that restores the host bit for bit."""

import hashlib

import pytest
import safetensors.torch
import torch

from harness.measure import swap
from harness.sources import models


def _digest(model):
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_segments_split_the_layers_evenly():
    assert swap.segments(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert swap.segments(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [len(s) for s in swap.segments(40, 10)] == [4] * 10
    with pytest.raises(ValueError):
        swap.segments(4, 5)


def test_the_papers_code_variant_takes_the_last_k_layers_of_a_segment():
    assert swap.block_layers([4, 5, 6, 7], last_k=2) == [6, 7]
    assert swap.block_layers([4, 5, 6, 7]) == [4, 5, 6, 7]


def test_swapping_copies_the_donor_block_and_restores_the_host_bit_for_bit(micro_pair):
    host = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    donor = models.load_model(models.ModelRef(str(micro_pair.sft_dir)), device="cpu")
    before = _digest(host)
    with swap.swapped(host, micro_pair.sft_dir, [1], head=True) as names:
        assert any(n.startswith("model.layers.1.") for n in names) and "lm_head.weight" in names
        assert not any(n.startswith(("model.layers.0.", "model.layers.2.")) for n in names)
        torch.testing.assert_close(
            host.model.layers[1].self_attn.q_proj.weight, donor.model.layers[1].self_attn.q_proj.weight, rtol=0, atol=0
        )
        assert not torch.equal(
            host.model.layers[0].self_attn.q_proj.weight, donor.model.layers[0].self_attn.q_proj.weight
        )
    assert _digest(host) == before


def test_host_is_restored_when_the_block_raises(micro_pair):
    host = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    before = _digest(host)
    with pytest.raises(RuntimeError, match="scoring failed"):
        with swap.swapped(host, micro_pair.sft_dir, [0, 2]):
            raise RuntimeError("scoring failed")
    assert _digest(host) == before


def _broken_copy(micro_pair, tmp_path, value: float):
    """The SFT checkpoint with layer 1's MLP up and down projections set to ``value``."""
    model = models.load_model(models.ModelRef(str(micro_pair.sft_dir)), device="cpu")
    with torch.no_grad():
        for weight in (model.model.layers[1].mlp.up_proj.weight, model.model.layers[1].mlp.down_proj.weight):
            weight.fill_(value)
    model.save_pretrained(tmp_path / "broken")
    models.load_tokenizer(models.ModelRef(str(micro_pair.sft_dir))).save_pretrained(tmp_path / "broken")
    return tmp_path / "broken"


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_donor_with_non_finite_weights_is_refused_naming_the_tensor(micro_pair, tmp_path):
    host = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    before = _digest(host)
    with pytest.raises(models.UnsupportedModelError, match=r"non-finite .* model\.layers\.1\.mlp\.up_proj"):
        with swap.swapped(host, _broken_copy(micro_pair, tmp_path, float("nan")), [0, 1]):
            pass
    assert _digest(host) == before


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_hybrid_whose_outputs_overflow_is_refused_naming_the_swap(micro_pair, tmp_path):
    from harness.errors import BadInputError
    from harness.sources import synthetic

    records = [synthetic.gsm8k_record(0, "test", i) for i in range(2)]
    broken = _broken_copy(micro_pair, tmp_path, 3e38)  # finite weights whose products overflow float32
    with pytest.raises(BadInputError, match=r"with layers \[1\] of .*broken swapped in: .*non-finite"):
        swap.swap_scores(micro_pair.base_dir, broken, records, (3,), device="cpu", progress=False)


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_value_of_m_above_the_layer_count_is_refused_for_that_m_alone(micro_pair):
    from harness import config, verification
    from harness.errors import BadInputError
    from harness.sources import synthetic

    records = [synthetic.gsm8k_record(0, "test", i) for i in range(4)]
    result = swap.swap_scores(micro_pair.base_dir, micro_pair.sft_dir, records, (3, 5), device="cpu", progress=False)
    assert sorted(result["segments"]) == [3]  # three layers: M = 5 has no segments to swap
    measured = verification.SwapMeasured("micro", None, config.thresholds_for("custom"))
    measured.results["base_with_sft_block"] = result
    assert measured.verdict("base_with_sft_block", 3).outcome in ("holds", "refuted", "inconclusive")
    with pytest.raises(BadInputError, match="micro has 3 decoder layers: C3 at M = 5 needs at least 5"):
        measured.verdict("base_with_sft_block", 5)


def test_hybrids_run_from_the_kept_host_states_give_every_score_of_a_full_forward(micro_pair, monkeypatch):
    """Both families: a hybrid run from its first swapped layer on (the host's states kept) gives the same
    log-likelihood, item for item and bit for bit, as the whole hybrid run from the embeddings."""
    from harness.sources import synthetic

    records = [synthetic.gsm8k_record(0, "test", i) for i in range(20)]

    def scores(budget, head_from):
        monkeypatch.setattr(swap, "PREFIX_BUDGET_BYTES", budget)
        monkeypatch.setattr(swap.HostPrefix.__init__, "__defaults__", (budget,))
        return swap.swap_scores(
            micro_pair.base_dir, micro_pair.sft_dir, records, (2, 3), head_from=head_from, device="cpu", progress=False
        )

    for head_from in ("host", "donor"):
        assert scores(1 << 30, head_from) == scores(0, head_from)


def test_host_states_too_large_to_keep_are_dropped(micro_pair):
    from harness.measure import evaluate
    from harness.sources import synthetic

    model = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    tokenizer = models.load_tokenizer(models.ModelRef(str(micro_pair.base_dir)))
    records = [synthetic.gsm8k_record(0, "test", i) for i in range(4)]
    kept, dropped = swap.HostPrefix(model, [1, 2]), swap.HostPrefix(model, [1, 2], budget=1)
    for prefix in (kept, dropped):
        with prefix.capturing():
            evaluate.answer_log_likelihood(model, tokenizer, records)
    assert kept.forward_from(1) is not None and kept.forward_from(0) is None
    assert dropped.forward_from(1) is None and dropped.bytes > dropped.budget


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_swap_scores_are_read_back_from_the_cache_exactly_and_keyed_by_the_files(
    micro_pair, isolated_cache, tmp_path, monkeypatch
):
    import shutil

    from harness.sources import synthetic

    records = [synthetic.gsm8k_record(0, "test", i) for i in range(3)]
    scored = swap.cached_swap_scores(
        micro_pair.base_dir, micro_pair.sft_dir, records, (3,), device="cpu", progress=False
    )
    assert len(list((isolated_cache / "swaps").glob("*.json"))) == 1
    direct = swap.swap_scores(micro_pair.base_dir, micro_pair.sft_dir, records, (3,), device="cpu", progress=False)
    monkeypatch.setattr(swap, "swap_scores", lambda *args, **kwargs: pytest.fail("scored again"))
    again = swap.cached_swap_scores(
        micro_pair.base_dir, micro_pair.sft_dir, records, (3,), device="cpu", progress=False
    )
    assert again == scored == direct  # segment counts are integers again, every score to the last bit

    changed = tmp_path / "changed"  # the same donor with one weight changed is another scoring
    shutil.copytree(micro_pair.sft_dir, changed)
    tensors = safetensors.torch.load_file(changed / "model.safetensors")
    tensors["model.layers.0.mlp.down_proj.weight"] += 1e-3
    safetensors.torch.save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(pytest.fail.Exception, match="scored again"):
        swap.cached_swap_scores(micro_pair.base_dir, changed, records, (3,), device="cpu", progress=False)
