"""Layer-wise probing by the logit lens (§4.3, Fig. 3).

Each layer's state goes through the model's own final norm and ``lm_head``,
and the argmax is compared with the next token. With the default layer
convention (every layer taken before the final norm) the norm is applied
exactly once to every layer, so layer L's accuracy is the model's own.
"""

from __future__ import annotations

import torch


def next_token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (B, T-1) and a mask of the positions whose state and next token are both real."""
    valid = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
    return input_ids[:, 1:], valid


@torch.no_grad()
def logit_lens_hits(states: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    norm: torch.nn.Module | None, lm_head: torch.nn.Module,
                    rows_per_chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: how many next tokens the layer's state predicts by argmax, and out of how many.

    ``states`` (B, T, D); ``norm`` is None when the states already went through
    the final norm. Logits are computed a chunk of rows at a time so a large
    vocabulary never needs (B, T, V) in memory. Returns two (B,) int tensors.
    """
    device = lm_head.weight.device
    norm_device = next(norm.parameters()).device if norm is not None else device  # may differ under device_map
    targets, valid = next_token_targets(input_ids, attention_mask)
    hidden = states[:, :-1].to(norm_device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    predictions = torch.empty(flat.shape[0], dtype=torch.long, device=device)
    for start in range(0, flat.shape[0], rows_per_chunk):
        chunk = flat[start:start + rows_per_chunk]
        if norm is not None:
            chunk = norm(chunk)
        predictions[start:start + rows_per_chunk] = lm_head(chunk.to(device)).argmax(dim=-1)
    predictions = predictions.reshape(targets.shape).cpu()
    valid = valid.cpu()
    hits = ((predictions == targets.cpu()) & valid).sum(dim=1)
    return hits, valid.sum(dim=1)
