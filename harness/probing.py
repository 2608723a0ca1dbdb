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
    targets, valid = next_token_targets(input_ids.cpu(), attention_mask.cpu())
    # only the positions with a real next token: padding would cost a full row of logits each
    predictions = lens_predictions(states[:, :-1][valid.to(states.device)], norm, lm_head, rows_per_chunk)
    correct = (predictions == targets[valid]).long()
    owner = torch.arange(valid.shape[0])[:, None].expand_as(valid)[valid]  # the sample of each position
    hits = torch.zeros(valid.shape[0], dtype=torch.long).index_add_(0, owner, correct)
    return hits, valid.sum(dim=1)


@torch.no_grad()
def lens_predictions(states: torch.Tensor, norm: torch.nn.Module | None, lm_head: torch.nn.Module,
                     rows_per_chunk: int = 2048) -> torch.Tensor:
    """The logit lens's next-token prediction (argmax of ``lm_head(norm(state))``) for each row of ``states``
    (positions, D), on the CPU; a chunk of rows at a time, so (positions, V) logits are never held."""
    device = lm_head.weight.device
    norm_device = next(norm.parameters()).device if norm is not None else device  # may differ under device_map
    predictions = torch.empty(states.shape[0], dtype=torch.long)
    for start in range(0, states.shape[0], rows_per_chunk):
        chunk = states[start:start + rows_per_chunk].to(norm_device)
        if norm is not None:
            chunk = norm(chunk)
        predictions[start:start + rows_per_chunk] = lm_head(chunk.to(device)).argmax(dim=-1).cpu()
    return predictions
