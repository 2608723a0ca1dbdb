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
def logit_lens_hits(
    states: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    norm: torch.nn.Module | None,
    lm_head: torch.nn.Module,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: how many next tokens the layer's state predicts by argmax, and out of how many.

    ``states`` (B, T, D); ``norm`` is None when the states already went through
    the final norm. Logits are computed a chunk of rows at a time so a large
    vocabulary never needs (B, T, V) in memory. Returns two (B,) int tensors.
    """
    targets, valid = next_token_targets(input_ids.cpu(), attention_mask.cpu())
    # only the positions with a real next token: padding would cost a full row of logits each
    predictions = lens_predictions(states[:, :-1][valid.to(states.device)], norm, lm_head)
    correct = (predictions == targets[valid]).long()
    owner = torch.arange(valid.shape[0])[:, None].expand_as(valid)[valid]  # the sample of each position
    hits = torch.zeros(valid.shape[0], dtype=torch.long).index_add_(0, owner, correct)
    return hits, valid.sum(dim=1)


def _device_of(norm: torch.nn.Module | None, head_device: torch.device) -> torch.device:
    """Where the final norm runs: it may differ from the head's device under a device map; a norm without
    parameters (OLMo 1's layer norm) runs on the head's."""
    parameter = next(iter(norm.parameters()), None) if norm is not None else None
    return parameter.device if parameter is not None else head_device


@torch.no_grad()
def lens_predictions(
    states: torch.Tensor,
    norm: torch.nn.Module | None,
    lm_head: torch.nn.Module,
    logits_per_chunk: int = 1 << 23,
    weights_per_block: int = 1 << 24,
) -> torch.Tensor:
    """The logit lens's next-token prediction (argmax of ``lm_head(norm(state))``) for each row of ``states``
    (positions, D), on the CPU.

    Rows go a chunk at a time, so at most ``logits_per_chunk`` logits (32 MB in float32) are held; a linear
    head goes a block of its vocabulary at a time, so a kernel that widens a bfloat16 weight to float32
    (as on the CPU) widens one block of ``weights_per_block`` values, not all of a 100k-word head (0.8 GB
    for OLMo-2 1B). Logits keep the model's dtype; the argmax over blocks keeps the first of equal maxima,
    as one argmax over the whole vocabulary does.
    """
    device = lm_head.weight.device
    norm_device = _device_of(norm, device)
    vocabulary, width = lm_head.weight.shape
    rows_per_chunk = max(1, min(2048, logits_per_chunk // vocabulary))
    block = (
        vocabulary if not isinstance(lm_head, torch.nn.Linear) else max(1, min(vocabulary, weights_per_block // width))
    )
    predictions = torch.empty(states.shape[0], dtype=torch.long)
    for start in range(0, states.shape[0], rows_per_chunk):
        chunk = states[start : start + rows_per_chunk].to(norm_device)
        if norm is not None:
            chunk = norm(chunk)
        chunk = chunk.to(device)
        if block == vocabulary:
            predictions[start : start + rows_per_chunk] = lm_head(chunk).argmax(dim=-1).cpu()
            continue
        best_value = best_index = None
        for first in range(0, vocabulary, block):
            bias = None if lm_head.bias is None else lm_head.bias[first : first + block]
            logits = torch.nn.functional.linear(chunk, lm_head.weight[first : first + block], bias)
            value, index = logits.max(dim=-1)
            if best_value is None:
                best_value, best_index = value, index
            else:
                better = value > best_value  # strictly: an equal maximum in a later block loses, as in argmax
                best_value = torch.where(better, value, best_value)
                best_index = torch.where(better, index + first, best_index)
        predictions[start : start + rows_per_chunk] = best_index.cpu()
    return predictions


@torch.no_grad()
def lens_hits(
    states: torch.Tensor,
    targets: torch.Tensor,
    norm: torch.nn.Module | None,
    lm_head: torch.nn.Module,
    screen: int = 512,
    margin: float = 0.02,
    logits_per_chunk: int = 1 << 23,
) -> torch.Tensor:
    """``lens_predictions(states, norm, lm_head) == targets``, settling most misses on a screen of the vocabulary.

    A row where one of the first ``screen`` words' logits exceeds the target's by more than ``margin`` of their
    sizes (far beyond any rounding of either) cannot predict the target; every other row gets the whole head,
    exactly as in ``lens_predictions``. Early layers, whose predictions are rarely right, mostly stop at the
    screen: the same hits for a fraction of the head's arithmetic.
    """
    vocabulary, width = lm_head.weight.shape
    if not isinstance(lm_head, torch.nn.Linear) or vocabulary <= 2 * screen:
        return lens_predictions(states, norm, lm_head, logits_per_chunk) == targets
    device = lm_head.weight.device
    norm_device = _device_of(norm, device)
    weight, bias = lm_head.weight, lm_head.bias
    hits = torch.zeros(states.shape[0], dtype=torch.bool)
    rows_per_chunk = max(1, min(2048, logits_per_chunk // screen))
    for start in range(0, states.shape[0], rows_per_chunk):
        chunk = states[start : start + rows_per_chunk].to(norm_device)
        if norm is not None:
            chunk = norm(chunk)
        chunk = chunk.to(device)
        wanted = targets[start : start + rows_per_chunk].to(device)
        target_logit = (chunk.float() * weight[wanted].float()).sum(dim=1)
        if bias is not None:
            target_logit = target_logit + bias[wanted].float()
        screened = torch.nn.functional.linear(chunk, weight[:screen], None if bias is None else bias[:screen])
        best = screened.float().max(dim=1).values
        beaten = best > target_logit + margin * (best.abs() + target_logit.abs()) + 1e-3
        rest = (~beaten).nonzero().squeeze(1)
        if rest.numel():
            full = lens_predictions(chunk[rest], None, lm_head, logits_per_chunk)
            hits[start + rest.cpu()] = full == wanted[rest].cpu()
    return hits
