"""Planted logit-lens emergence (C5): two trained blocks placed at a chosen depth among identity blocks.

A two-layer OLMo-2 model is trained on GSM8K-format text (the generator's train split; probes come from
its test split) with its embeddings confined to the first half of the hidden coordinates and its
``lm_head`` reading only the second half. A state that no block has written to therefore gives the head
nothing to read: every logit is 0 and the lens predicts token 0 (the first of equal maxima), which is
right only where the next token happens to be token 0 (end of text for the tiny tokenizer: rare inside
a probe text). Only the trained blocks write where the head reads. Placed in a ten-layer model whose other
blocks write nothing (both post-norm gains 0, so each is an exact identity), the trained pair makes the
logit lens exactly dormant up to the first trained block and as accurate as the two-layer model from
the second on.
"""

from __future__ import annotations

import torch
import transformers

from harness import cache, training
from harness.sources import synthetic
from harness.sources.layouts import decoder_layers

READER_FORMAT = 1
READER_LAYERS = 2
STEPS, BATCH, LENGTH, LEARNING_RATE = 100, 16, 64, 3e-3


def _split_masks(hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding coordinates, head coordinates): the first and second half of the hidden state."""
    embedding = torch.zeros(hidden)
    embedding[: hidden // 2] = 1.0
    return embedding, 1.0 - embedding


def _confine(model) -> None:
    embedding_mask, head_mask = _split_masks(model.config.hidden_size)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(embedding_mask)
        model.get_output_embeddings().weight.mul_(head_mask)


def _train_reader(config: transformers.Olmo2Config, tokenizer, seed: int, progress: bool):
    reader_config = config.__class__(**{**config.to_dict(), "num_hidden_layers": READER_LAYERS})
    torch.manual_seed(seed)
    reader = transformers.Olmo2ForCausalLM(reader_config)
    _confine(reader)
    embedding_mask, head_mask = _split_masks(config.hidden_size)
    # the confinement holds during training too: the masked coordinates get no gradient
    reader.get_input_embeddings().weight.register_hook(lambda grad: grad * embedding_mask)
    reader.get_output_embeddings().weight.register_hook(lambda grad: grad * head_mask)
    ids: list[int] = []
    for index in range(4000):
        record = synthetic.gsm8k_record(seed, "train", index)
        ids += tokenizer(f"Question: {record['question']}\nAnswer: {record['answer']}")["input_ids"]
        ids.append(tokenizer.eos_token_id)
    losses = training.train(
        reader,
        training.window_sampler(torch.tensor(ids), BATCH, LENGTH),
        training.Schedule(STEPS, LEARNING_RATE),
        seed=seed,
        description="C5 control: two-layer reader",
        progress=progress,
    )
    return reader, losses  # AdamW without weight decay leaves a parameter with zero gradients where it was


def recipe() -> dict:
    """What determines the reader besides its source pair and seed (part of every planted pair's key)."""
    return {
        "format": READER_FORMAT,
        "layers": READER_LAYERS,
        "steps": STEPS,
        "batch": BATCH,
        "length": LENGTH,
        "learning_rate": LEARNING_RATE,
    }


def trained_reader(source_dir, source_key: str, seed: int = 0, progress: bool = True):
    """The two-layer reader for the tiny pair in ``source_dir`` (its config and tokenizer), trained on first
    use and cached."""
    from transformers import AutoConfig, AutoTokenizer

    key = cache.stable_hash({"source": source_key, "seed": seed, **recipe()})
    directory = cache.cache_root() / "zoo" / f"lens_reader-{key}"
    if not cache.is_complete(directory):
        with cache.atomic_directory(directory) as scratch:
            config = AutoConfig.from_pretrained(source_dir)
            tokenizer = AutoTokenizer.from_pretrained(source_dir)
            reader, losses = _train_reader(config, tokenizer, seed, progress)
            reader.save_pretrained(scratch)
            cache.write_json_atomic(scratch / "train.json", {"final_loss": sum(losses[-20:]) / 20, "steps": STEPS})
    return transformers.Olmo2ForCausalLM.from_pretrained(directory, dtype=torch.float32)


def place(model, reader, first_layer: int | None) -> None:
    """Make ``model`` (OLMo-2, the reader's config but more layers) the reader's embeddings, final norm and
    head, with the reader's blocks at layers ``first_layer`` and ``first_layer + 1`` and identity blocks
    everywhere else (``first_layer=None``: identity blocks only)."""
    layers = decoder_layers(model)
    if first_layer is not None and not 0 <= first_layer <= len(layers) - READER_LAYERS:
        raise ValueError(f"the reader's blocks cannot start at layer {first_layer} of {len(layers)}")
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(reader.get_input_embeddings().weight)
        model.get_output_embeddings().weight.copy_(reader.get_output_embeddings().weight)
        model.model.norm.weight.copy_(reader.model.norm.weight)
        for index, layer in enumerate(layers):
            offset = None if first_layer is None else index - first_layer
            if offset is not None and 0 <= offset < READER_LAYERS:
                layer.load_state_dict(decoder_layers(reader)[offset].state_dict())
            else:  # an identity block: OLMo-2 adds each sub-block's output after its norm, here scaled by 0
                layer.post_attention_layernorm.weight.zero_()
                layer.post_feedforward_layernorm.weight.zero_()
