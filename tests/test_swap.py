"""Layer swaps: segments, in-place swapping that restores the host bit for bit."""

import hashlib

import pytest
import torch

from harness import models, swap


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
        torch.testing.assert_close(host.model.layers[1].self_attn.q_proj.weight,
                                   donor.model.layers[1].self_attn.q_proj.weight, rtol=0, atol=0)
        assert not torch.equal(host.model.layers[0].self_attn.q_proj.weight,
                               donor.model.layers[0].self_attn.q_proj.weight)
    assert _digest(host) == before


def test_host_is_restored_when_the_block_raises(micro_pair):
    host = models.load_model(models.ModelRef(str(micro_pair.base_dir)), device="cpu")
    before = _digest(host)
    with pytest.raises(RuntimeError, match="scoring failed"):
        with swap.swapped(host, micro_pair.sft_dir, [0, 2]):
            raise RuntimeError("scoring failed")
    assert _digest(host) == before
