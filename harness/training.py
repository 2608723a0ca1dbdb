"""A small, deterministic training loop for causal language models.

Used to pretrain and fine-tune the tiny pairs (and, later, to train LoRA arms).
Batches come from a seeded generator, so a run is reproducible on one machine.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.cache import write_bytes_atomic
from harness.errors import BadInputError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Schedule:
    steps: int
    learning_rate: float
    warmup_share: float = 0.05
    final_share: float = 0.1  # cosine decays to this share of the peak
    weight_decay: float = 0.0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise BadInputError(f"steps must be at least 1, got {self.steps}")
        if not self.learning_rate > 0:
            raise BadInputError(f"learning_rate must be positive, got {self.learning_rate}")

    def factor(self, step: int) -> float:
        warmup = max(1, int(self.steps * self.warmup_share))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        return self.final_share + (1 - self.final_share) * 0.5 * (1 + math.cos(math.pi * progress))


Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Checkpoints:
    """Where a resumable run keeps its latest state, and how often it saves it (in steps)."""

    path: Path
    every: int = 50

    def __post_init__(self) -> None:
        if self.every < 1:
            raise BadInputError(f"checkpoints need every >= 1 step, got {self.every}")


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(checkpoints: Checkpoints, model, optimizer, scheduler, generator, losses) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "step": len(losses),
            "losses": losses,
            "trainable": _trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
        },
        buffer,
    )
    write_bytes_atomic(checkpoints.path, buffer.getvalue())


def _resume(checkpoints: Checkpoints, model, optimizer, scheduler, generator) -> list[float]:
    """Load the saved state into the run's objects; return the losses so far (empty when starting afresh)."""
    if not checkpoints.path.exists():
        return []
    state = torch.load(checkpoints.path, weights_only=True)
    parameters = dict(model.named_parameters())
    unknown = sorted(set(state["trainable"]) - {n for n, p in parameters.items() if p.requires_grad})
    if unknown:
        raise BadInputError(
            f"checkpoint {checkpoints.path} does not belong to this model (e.g. {unknown[0]}); "
            f"delete it to start afresh"
        )
    with torch.no_grad():
        for name, value in state["trainable"].items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return list(state["losses"])


def train(
    model: torch.nn.Module,
    next_batch: Callable[[torch.Generator], Batch],
    schedule: Schedule,
    seed: int,
    description: str,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> list[float]:
    """Run ``schedule.steps`` AdamW steps on batches drawn by ``next_batch``; return the losses.

    With ``checkpoints``, the trainable weights, optimizer, schedule and batch
    generator are saved every few steps, and a run that finds a checkpoint goes
    on from it: the result is the same as an uninterrupted run.
    """
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise BadInputError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(
        parameters, lr=schedule.learning_rate, betas=(0.9, 0.95), weight_decay=schedule.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
    losses: list[float] = _resume(checkpoints, model, optimizer, scheduler, generator) if checkpoints else []
    model.train()
    bar = tqdm(
        range(len(losses), schedule.steps),
        desc=description,
        disable=not progress,
        leave=False,
        initial=len(losses),
        total=schedule.steps,
    )
    for _ in bar:
        batch = next_batch(generator)
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{description}: loss became {loss.item()} at step {len(losses)}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, schedule.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if checkpoints and (len(losses) % checkpoints.every == 0 or len(losses) == schedule.steps):
            _save_checkpoint(checkpoints, model, optimizer, scheduler, generator, losses)
    model.eval()
    return losses


def window_sampler(stream: torch.Tensor, batch_size: int, length: int) -> Callable[[torch.Generator], Batch]:
    """Random windows of ``length`` tokens from one long token stream (pretraining)."""
    if stream.numel() <= length:
        raise BadInputError(f"token stream of {stream.numel()} tokens is too short for windows of {length}")

    def next_batch(generator: torch.Generator) -> Batch:
        starts = torch.randint(0, stream.numel() - length, (batch_size,), generator=generator)
        windows = torch.stack([stream[s : s + length] for s in starts.tolist()])
        return {"input_ids": windows, "labels": windows.clone()}

    return next_batch


def supervised_sampler(
    examples: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_token_id: int
) -> Callable[[torch.Generator], Batch]:
    """Batches of (prompt ids, answer ids) pairs, right-padded, with the loss on answer tokens only."""
    if not examples:
        raise BadInputError("no supervised examples")

    def next_batch(generator: torch.Generator) -> Batch:
        picks = torch.randint(0, len(examples), (batch_size,), generator=generator).tolist()
        rows = [examples[i] for i in picks]
        width = max(len(p) + len(a) for p, a in rows)
        input_ids = torch.full((batch_size, width), pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, (prompt, answer) in enumerate(rows):
            ids = prompt + answer
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, len(prompt) : len(ids)] = torch.tensor(answer)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    return next_batch
