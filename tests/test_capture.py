"""Layer capture: the hooks see exactly what the model computes, once, and leave nothing behind."""

import pytest
import torch

from harness.measure import capture
from harness.measure.probing import logit_lens_hits
from harness.sources import models


@pytest.fixture
def loaded(micro_pair):
    ref = models.ModelRef(str(micro_pair.sft_dir))
    return models.load_model(ref, dtype="float32", device="cpu"), models.load_tokenizer(ref)


def _capture(model, batch, last_layer="pre_norm"):
    states = {}
    with capture.layer_hooks(model, lambda layer, h: states.__setitem__(layer, h.clone()), last_layer):
        capture.forward_only(model, batch)
    return states


def _one_batch(tokenizer, texts, batch_size=8):
    encoded = capture.encode(tokenizer, texts, max_tokens=64)
    return next(capture.batches(encoded, list(range(len(texts))), batch_size, tokenizer.pad_token_id))


def test_hooks_match_output_hidden_states(loaded):
    model, tokenizer = loaded
    batch = _one_batch(tokenizer, ["Question: Ava has 3 apples.", "The quick brown fox"])
    states = _capture(model, batch)
    with torch.no_grad():
        reference = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
        ).hidden_states
    n = len(capture.decoder_layers(model))
    assert sorted(states) == list(range(n + 1))
    for layer in range(n):  # layer 0 is the embedding output, layer l the output of block l
        torch.testing.assert_close(states[layer], reference[layer])
    # output_hidden_states ends with the final-norm output; layer L is taken before the norm
    torch.testing.assert_close(capture.final_norm(model)(states[n]), reference[n])
    final = _capture(model, batch, last_layer="final_norm")
    torch.testing.assert_close(final[n], reference[n])


def test_right_padding_leaves_real_tokens_unchanged(loaded):
    model, tokenizer = loaded
    texts = ["A short one.", "A much longer text that needs many more tokens than the first one does."]
    together = _capture(model, _one_batch(tokenizer, texts))
    batch = _one_batch(tokenizer, texts)
    for row, sample in enumerate(batch.sample_ids):
        alone = _capture(model, _one_batch(tokenizer, [texts[sample]]))
        length = int(batch.attention_mask[row].sum())
        for layer, h in alone.items():
            torch.testing.assert_close(together[layer][row, :length], h[0], atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_even_after_an_error(loaded):
    model, tokenizer = loaded
    batch = _one_batch(tokenizer, ["hello world"])

    def failing(layer, states):
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        with capture.layer_hooks(model, failing):
            capture.forward_only(model, batch)
    layers = capture.decoder_layers(model)
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in layers)


def test_logit_lens_on_the_last_layer_is_the_models_own_accuracy(loaded):
    model, tokenizer = loaded
    batch = _one_batch(tokenizer, ["Question: Ava has 3 apples and 4 pens.", "The answer is 7."])
    states = _capture(model, batch)
    n = len(capture.decoder_layers(model))
    hits, totals = logit_lens_hits(
        states[n], batch.input_ids, batch.attention_mask, capture.final_norm(model), model.get_output_embeddings()
    )
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    predicted = logits[:, :-1].argmax(-1)
    valid = batch.attention_mask[:, :-1].bool() & batch.attention_mask[:, 1:].bool()
    expected = ((predicted == batch.input_ids[:, 1:]) & valid).sum(1)
    assert torch.equal(hits, expected) and torch.equal(totals, valid.sum(1))


def test_tuple_outputs_are_unwrapped_and_tensors_are_not_indexed():
    states = torch.randn(2, 3, 4)
    assert capture._tensor_of(states) is states
    assert capture._tensor_of((states, None)) is states


def test_unknown_last_layer_choice_is_refused(loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match="last_layer"):
        with capture.layer_hooks(model, lambda *a: None, last_layer="middle"):
            pass


def test_batches_cover_every_sample_once_longest_first():
    encoded = [[1] * n for n in (3, 7, 1, 5, 2)]
    seen = []
    for batch in capture.batches(encoded, [10, 11, 12, 13, 14], 2, pad_token_id=0):
        seen += batch.sample_ids
        assert batch.attention_mask.sum(1).tolist() == [len(encoded[s - 10]) for s in batch.sample_ids]
    assert seen == [11, 13, 10, 14, 12]


@pytest.mark.parametrize("with_norm", [True, False])
def test_lens_hits_settle_misses_on_a_screen_and_equal_the_full_argmax(with_norm):
    """Random rows, rows whose target is the model's own argmax, and exact ties between the target and a
    screened word (argmax keeps the first of equals: a miss) all get the full head's answer."""
    from harness.measure.probing import lens_hits, lens_predictions

    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 2048, bias=False)
    norm = torch.nn.LayerNorm(16) if with_norm else None
    states = torch.randn(600, 16, generator=generator)
    targets = torch.randint(0, 2048, (600,), generator=generator)
    full = lens_predictions(states, norm, head)
    targets[:200] = full[:200]  # right predictions, which must reach the full head
    with torch.no_grad():
        head.weight[1500] = head.weight[3]  # word 1500 ties with screened word 3 on every row
    targets[200:260] = 1500
    targets[260:280] = 3
    expected = lens_predictions(states, norm, head) == targets
    assert expected[:200].float().mean() > 0.9 and not expected[200:260].any()
    assert torch.equal(lens_hits(states, targets, norm, head), expected)
