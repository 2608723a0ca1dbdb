"""Streaming capture of every layer's hidden states in one forward pass.

Layer numbering, used everywhere in the harness: layer 0 is the embedding
output (the residual stream entering the first decoder block), layer l in
1..L is the output of decoder block l. Every layer is taken *before* the final
norm, so all L+1 states are the same kind of object; the final-norm output is
what ``model(...)`` hands to ``lm_head``, and ``last_layer="final_norm"``
swaps it in for layer L (the convention of ``output_hidden_states``).

Hooks hand each layer's states to a sink as soon as the block has run, and
the sink keeps only what it needs, so layers × samples × tokens × width is
never held. Batches are right-padded: with causal attention the real tokens
never see the padding, and their positions match an unbatched pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from harness import depth
from harness.errors import BadInputError
from harness.sources.layouts import decoder_layers, layout_of

LAST_LAYER_CHOICES = ("pre_norm", "final_norm")
StateSink = Callable[[int, torch.Tensor], None]  # (layer, states (B, T, D))


def final_norm(model) -> torch.nn.Module:
    return layout_of(model).final_norm_module(model)


def _tensor_of(output) -> torch.Tensor:
    # transformers 5 decoder layers return a tensor; older ones a tuple whose first item is the state.
    # Indexing a tensor with [0] would silently take batch element 0, so test the type.
    return output if isinstance(output, torch.Tensor) else output[0]


@contextmanager
def layer_hooks(model, sink: StateSink, last_layer: str = "pre_norm") -> Iterator[int]:
    """Install hooks that send layers 0..L to ``sink``; yield L. Hooks are always removed."""
    if last_layer not in LAST_LAYER_CHOICES:
        raise BadInputError(f"last_layer must be one of {LAST_LAYER_CHOICES}, got {last_layer!r}")
    layers = decoder_layers(model)
    count = len(layers)
    handles = []

    def embedding_hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        sink(depth.EMBEDDING_ROW, hidden)

    handles.append(layers[0].register_forward_pre_hook(embedding_hook, with_kwargs=True))
    for index, layer in enumerate(layers):
        row = depth.row_of_layer(index)
        if row == count and last_layer == "final_norm":
            continue

        def hook(module, args, output, row=row):
            sink(row, _tensor_of(output))

        handles.append(layer.register_forward_hook(hook))
    if last_layer == "final_norm":
        handles.append(final_norm(model).register_forward_hook(lambda m, a, output: sink(count, output)))
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Batch:
    sample_ids: list[int]  # positions in the probe set
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T), 1 on real tokens


def encode(tokenizer, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_tokens``, with the tokenizer's own special tokens."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_tokens, add_special_tokens=True)["input_ids"]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise BadInputError(f"{len(empty)} texts encode to no tokens (first at index {empty[0]})")
    return encoded


def batches(
    encoded: Sequence[Sequence[int]], sample_ids: Sequence[int], batch_size: int, pad_token_id: int
) -> Iterator[Batch]:
    """Right-padded batches, longest first so similar lengths share a batch (less padding)."""
    order = sorted(range(len(sample_ids)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        yield Batch([sample_ids[i] for i in rows], input_ids, mask)


def input_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


@torch.no_grad()
def forward_only(model, batch: Batch) -> None:
    """One forward pass of the decoder stack; the logits are never computed (the sinks need none)."""
    device = input_device(model)
    inner = layout_of(model).decoder_module(model)
    inner(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False)
