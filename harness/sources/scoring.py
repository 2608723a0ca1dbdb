"""Quick greedy exact match on GSM8K-format problems, used to check that a fine-tune learned.

Downstream scores that go into reports come from lm-eval (``harness.measure.evaluate``);
this is the build-time check that needs no task files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

ANSWER_PATTERN = re.compile(r"#### (-?[0-9.,]+)")


def gsm8k_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def extract_answer(completion: str) -> str | None:
    """The number after the first ``#### `` (GSM8K's strict match), or None."""
    match = ANSWER_PATTERN.search(completion)
    return match.group(1).replace(",", "").rstrip(".") if match else None


@torch.no_grad()
def greedy_exact_match(
    model, tokenizer, records: Sequence[dict], batch_size: int = 32, max_new_tokens: int = 32
) -> float:
    """Share of records whose greedy completion states the right ``#### N``."""
    if not records:
        raise ValueError("no records to score")
    from harness.sources.synthetic import final_answer

    model.eval()
    correct = 0
    tokenizer.padding_side = "left"
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        encoded = tokenizer([gsm8k_prompt(r["question"]) for r in chunk], return_tensors="pt", padding=True).to(
            model.device
        )
        generated = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        completions = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        correct += sum(extract_answer(c) == final_answer(r["answer"]) for c, r in zip(completions, chunk, strict=True))
    return correct / len(records)
