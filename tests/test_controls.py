"""The constructions of the C5, C6 and LoRA controls, checked on small random models (no training)."""

from pathlib import Path

import pytest
import torch
import transformers

from harness import cache
from harness.metrics import effective_rank, spectral_norm
from harness.plants import build, catalogue, constructions, emergence
from harness.sources import zoo


def _config(layers: int) -> transformers.Olmo2Config:
    return transformers.Olmo2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )


def _states(model, ids):
    """The embedding output and every decoder layer's output, before the final norm (as the profile takes
    them; ``output_hidden_states`` gives the last one after it)."""
    outputs = []
    hooks = [
        layer.register_forward_hook(
            lambda module, args, output: outputs.append(output[0] if isinstance(output, tuple) else output)
        )
        for layer in model.model.layers
    ]
    try:
        with torch.no_grad():
            embedded = model(input_ids=ids, output_hidden_states=True).hidden_states[0]
    finally:
        for hook in hooks:
            hook.remove()
    return [embedded, *outputs]


def test_a_placed_reader_leaves_every_other_block_an_exact_identity_and_the_lens_blind_before_it():
    torch.manual_seed(0)
    reader = transformers.Olmo2ForCausalLM(_config(emergence.READER_LAYERS))
    emergence._confine(reader)
    model = transformers.Olmo2ForCausalLM(_config(6))
    emergence.place(model, reader, 3)
    ids = torch.randint(0, 64, (2, 9))
    states = _states(model, ids)
    for layer in range(1, 4):  # identity blocks before the reader: the embedding output, bit for bit
        assert torch.equal(states[layer], states[0])
    assert not torch.equal(states[4], states[3])
    assert torch.equal(states[6], states[5])  # an identity block after it
    with torch.no_grad():  # nothing written where the head reads: every logit is exactly 0
        assert torch.count_nonzero(model.lm_head(model.model.norm(states[3]))) == 0
        reader_logits = reader(input_ids=ids).logits
    assert torch.allclose(model(input_ids=ids).logits, reader_logits, atol=1e-5)


def test_a_reader_placed_nowhere_makes_every_block_an_identity():
    reader = transformers.Olmo2ForCausalLM(_config(emergence.READER_LAYERS))
    model = transformers.Olmo2ForCausalLM(_config(4))
    emergence.place(model, reader, None)
    states = _states(model, torch.randint(0, 64, (1, 7)))
    assert all(torch.equal(state, states[0]) for state in states[1:-1])


def test_the_hand_built_stages_collapse_the_rank_and_raise_the_norm_only_at_the_last_layer():
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (40, 12))

    def pooled(**options):
        model = transformers.Olmo2ForCausalLM(_config(6))
        constructions.stages(model, **options)
        return [state.mean(dim=1).double() for state in _states(model, ids)]

    full, flat_end = pooled(), pooled(collapse=False)
    plateau_rank = effective_rank(full[3])
    assert effective_rank(full[-1]) < 1.05 < plateau_rank
    assert spectral_norm(full[-1]) > 10 * spectral_norm(full[3])
    assert effective_rank(flat_end[-1]) > 0.5 * plateau_rank  # large, but spread over every direction
    assert spectral_norm(flat_end[-1]) > 2 * spectral_norm(flat_end[3])


def test_the_stages_without_explosion_collapse_the_rank_but_keep_the_norm_at_the_last_layer():
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (40, 12))
    uniform = torch.full((64,), 1 / 64)
    model = transformers.Olmo2ForCausalLM(_config(6))
    constructions.stages_without_explosion(model, frequencies=uniform)
    states = _states(model, ids)
    before, last = states[-2][..., 1:], states[-1][..., 1:]
    # the last write cancels every coordinate but 0, up to the spread of their norm from token to token
    assert last.norm(dim=-1).mean() < 0.05 * before.norm(dim=-1).mean()
    assert torch.equal(states[-1][..., 0], torch.full_like(states[-1][..., 0], constructions.STEADY_COORDINATE))
    pooled = [state.mean(dim=1).double() for state in states]
    assert effective_rank(pooled[-1]) < 1.05 < 5 < effective_rank(pooled[3])
    assert spectral_norm(pooled[-1]) < spectral_norm(pooled[3])  # the rank collapses, the norm does not explode

    narrow = transformers.Olmo2ForCausalLM(_config(6))
    narrow.config.intermediate_size = 32
    with pytest.raises(ValueError, match="needs 62 hidden units"):
        constructions.stages_without_explosion(narrow, frequencies=uniform)


def test_the_c1_isolates_move_the_states_the_way_their_conditions_need():
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (40, 12))

    def built(*names):
        model = transformers.Olmo2ForCausalLM(_config(6))
        for name in names:
            constructions.CONSTRUCTIONS[name](model)
        return [state.reshape(-1, state.shape[-1]).double() for state in _states(model, ids)]

    quiet, offset = built("quiet"), built("quiet", "offset_then_late")
    # the first layer's write replaced by one vector: every token moved alike, but for the quiet write it replaced
    shift = offset[1] - quiet[1]
    assert shift.std(dim=0).norm() < 0.1 * shift.mean(dim=0).norm()
    assert torch.equal(offset[0], quiet[0])
    assert (offset[-1] - quiet[-1]).std(dim=0).norm() > 10 * shift.std(dim=0).norm()  # the last write differs

    common, moved = built("common_write"), built("common_write", "moved_under_common_write")
    cosines = [torch.nn.functional.cosine_similarity(a, b, dim=1).mean() for a, b in zip(common, moved, strict=True)]
    assert cosines[-1] > max(cosines[:-1])  # highest at the last layer, where one large vector dominates both
    assert not torch.equal(moved[-1] - moved[-2], common[-1] - common[-2])  # the SFT's last attention writes


def test_a_trapped_layer_computes_the_same_function_but_its_adapter_takes_over_the_layer():
    torch.manual_seed(0)
    clean = transformers.Olmo2ForCausalLM(_config(5))
    trapped = transformers.Olmo2ForCausalLM(_config(5))
    trapped.load_state_dict(clean.state_dict())
    constructions.trap(trapped, [1, 2])
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(trapped(input_ids=ids).logits, clean(input_ids=ids).logits, rtol=1e-4, atol=1e-4)

    def moved_by_one_adapter_step(model):
        """How far the logits move when layer 1's output projection gets the same small low-rank change."""
        torch.manual_seed(1)
        delta = torch.randn(32, 2) @ torch.randn(2, 32) * 1e-3
        with torch.no_grad():
            before = model(input_ids=ids).logits
            model.model.layers[1].self_attn.o_proj.weight.add_(delta)
            return (model(input_ids=ids).logits - before).abs().mean().item()

    # the same change is a thousand times larger against the trapped weight; the post-norm bounds the write
    assert moved_by_one_adapter_step(trapped) > 10 * moved_by_one_adapter_step(clean)


def test_the_trap_constructions_trap_the_bands_they_name_by_their_own_gain():
    torch.manual_seed(0)
    clean = transformers.Olmo2ForCausalLM(_config(10))
    for name, gain, trapped_layers in (
        ("trap_edges", constructions.TRAP_GAIN, {0, 1, 8, 9}),
        ("trap_middle", constructions.TRAP_GAIN, set(range(2, 8))),
        ("trap_edges_tenfold", constructions.RETENTION_TRAP_GAIN, {0, 1, 8, 9}),
    ):
        model = transformers.Olmo2ForCausalLM(_config(10))
        model.load_state_dict(clean.state_dict())
        constructions.CONSTRUCTIONS[name](model)
        assert constructions.TRAP_GAINS[name] == gain
        for index, (layer, reference) in enumerate(zip(model.model.layers, clean.model.layers, strict=True)):
            expected = gain if index in trapped_layers else 1.0
            scale = layer.self_attn.v_proj.weight / reference.self_attn.v_proj.weight
            torch.testing.assert_close(scale, torch.full_like(scale, expected), msg=f"{name}, layer {index}")
            torch.testing.assert_close(layer.mlp.down_proj.weight * expected, reference.mlp.down_proj.weight)


def test_a_planted_control_is_profiled_on_at_most_300_pooled_samples_wherever_it_is_asked_from():
    assert catalogue.control_pooled_samples("planted_late", 1000) == catalogue.CONTROL_POOLED_SAMPLES == 300
    assert catalogue.control_pooled_samples("planted_lora_edges", 100) == 100
    assert catalogue.control_pooled_samples("tiny_olmo2", 1000) == 1000


def _directory_of(name, monkeypatch):
    """The cache entry ``build_control`` would build ``name`` into (nothing is built)."""
    entries = []
    source = zoo.BuiltPair(name="tiny_olmo2", base_dir=Path("base"), sft_dir=Path("sft"), info={"key": "tiny"})
    monkeypatch.setattr(zoo, "build_pair", lambda *args, **kwargs: source)
    monkeypatch.setattr(cache, "build_once", lambda directory, make: entries.append(directory))
    monkeypatch.setattr(build.json, "loads", lambda text: {})
    monkeypatch.setattr(Path, "read_text", lambda self: "{}")
    build.build_control(name, progress=False)
    return entries[-1]


def test_a_controls_cache_key_follows_its_constructions_code_and_constants(monkeypatch):
    smooth, late = _directory_of("planted_smooth", monkeypatch), _directory_of("planted_late", monkeypatch)
    trapped = _directory_of("planted_lora_mid_block", monkeypatch)
    assert _directory_of("planted_smooth", monkeypatch) == smooth  # the same recipe: found in the cache
    monkeypatch.setattr(constructions, "SMOOTH_GAIN", constructions.SMOOTH_GAIN * 2)  # a constant the code reads
    assert _directory_of("planted_smooth", monkeypatch) != smooth  # built again
    assert _directory_of("planted_late", monkeypatch) == late  # a control that does not read it is kept
    monkeypatch.setattr(constructions, "TRAP_GAIN", constructions.TRAP_GAIN / 2)  # a default argument's constant
    assert _directory_of("planted_lora_mid_block", monkeypatch) == trapped  # bound at definition: unchanged code
    monkeypatch.setitem(constructions.CONSTRUCTIONS, "trap_edges", constructions.trap_band("edges", 999.0))
    assert _directory_of("planted_lora_mid_block", monkeypatch) != trapped  # a closure's value changed
