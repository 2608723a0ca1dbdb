"""Hybrid models: one model with a block of layers taken from its pair partner (§4.3, Fig. 6).

Weights are copied in place, tensor by tensor from the donor's safetensors
files, into the same layer positions (a module moved to another index would keep
its ``layer_idx`` and change cached generation), and copied back afterwards: no
second model and no deep copy per configuration. ``swapped`` restores the host
bit for bit, also when the block inside it raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.depth import segments
from harness.errors import NonFiniteError
from harness.metrics.weights import _read, safetensors_index
from harness.sources.models import UnsupportedModelError

HEAD_PATTERNS = (re.compile(r"^model\.norm\."), re.compile(r"^lm_head\."))
DIRECTIONS = {"base_with_sft_block": ("base", "sft"), "sft_with_base_block": ("sft", "base")}


def block_layers(segment: list[int], last_k: int | None = None) -> list[int]:
    """The layers a swap replaces: the whole segment (the paper's description), or its last k (its code)."""
    if last_k is None:
        return list(segment)
    if last_k < 1:
        raise ValueError("last_k must be at least 1")
    return list(segment[-last_k:])


def _swapped_names(host, layers: list[int], head: bool) -> list[str]:
    wanted = tuple(f"model.layers.{layer}." for layer in layers)
    names = [name for name, _ in host.named_parameters() if name.startswith(wanted)]
    if head:
        names += [name for name, _ in host.named_parameters() if any(p.match(name) for p in HEAD_PATTERNS)]
    return names


@contextmanager
def swapped(host, donor_dir: Path, layers: list[int], head: bool = False) -> Iterator[list[str]]:
    """Within the block, ``host`` runs with ``layers`` (0-based decoder indices) and, with ``head``,
    the final norm and lm_head of the donor checkpoint. Yields the swapped parameter names."""
    donor = safetensors_index(Path(donor_dir))
    parameters = dict(host.named_parameters())
    names = _swapped_names(host, layers, head)
    missing = [name for name in names if name not in donor]
    if missing:
        raise KeyError(f"the donor checkpoint lacks {len(missing)} tensors, e.g. {missing[0]}")
    saved = {}
    try:
        with torch.no_grad():
            for name in names:
                target = parameters[name]
                incoming = _read(donor[name], name)
                if incoming.is_floating_point() and not torch.isfinite(incoming).all():
                    raise UnsupportedModelError(f"{donor_dir} has non-finite (NaN or infinite) weights in {name}")
                if incoming.shape != target.shape:
                    raise ValueError(f"{name}: donor shape {tuple(incoming.shape)}, host {tuple(target.shape)}")
                saved[name] = target.detach().clone()
                target.copy_(incoming.to(dtype=target.dtype, device=target.device))
        yield names
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                parameters[name].copy_(original)


# The host's states entering each swapped block are kept (per batch of scored items) when they fit in this
# many bytes: a hybrid then runs only from its first swapped layer on. Above it (a large model, many items),
# every hybrid runs from the embeddings, as before.
PREFIX_BUDGET_BYTES = 1 << 30


class HostPrefix:
    """The unswapped host's hidden states entering chosen layers, captured while the host itself is scored.

    A hybrid that swaps layers a..b computes exactly the host's states up to layer a, so it is run from
    there: the decoder's layer list is cut to layers a..L for the call and the kept states go in as
    ``inputs_embeds`` (OLMo-2 and Mistral add nothing to them). Masks and positions are made from the same
    batch as before, so every logit is the one a full forward pass gives.
    """

    def __init__(self, model, starts: list[int], budget: int = PREFIX_BUDGET_BYTES):
        self.model = model
        self.starts = sorted(set(starts) - {0})  # a swap from layer 0 gains nothing
        self.states: dict[int, list[torch.Tensor]] = {start: [] for start in self.starts}
        self.budget, self.bytes = budget, 0

    @contextmanager
    def capturing(self) -> Iterator[None]:
        layers = self.model.model.layers

        def keeper(start):
            def keep(module, args, kwargs):
                if start not in self.states:
                    return
                hidden = args[0] if args else kwargs["hidden_states"]
                self.bytes += hidden.numel() * hidden.element_size()
                if self.bytes > self.budget:  # too large to keep: every hybrid runs in full
                    self.states.clear()
                    return
                self.states[start].append(hidden.detach().clone())
            return keep

        handles = [layers[start].register_forward_pre_hook(keeper(start), with_kwargs=True) for start in self.starts]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward_from(self, start: int):
        """The ``forward`` of ``evaluate.answer_log_likelihood`` for a hybrid whose first swapped layer is
        ``start``; None when that layer's states were not kept."""
        if start not in self.states:
            return None
        decoder = self.model.model

        def forward(number, ids, mask):
            layers = decoder.layers
            decoder.layers = torch.nn.ModuleList(list(layers)[start:])
            try:
                return self.model(inputs_embeds=self.states[start][number], attention_mask=mask).logits
            finally:
                decoder.layers = layers

        return forward


def swap_scores(host_dir: Path, donor_dir: Path, records: list[dict], segment_counts: tuple[int, ...] = (3, 5, 10),
                head_from: str = "host", last_k: int | None = None, dtype: str = "float32", device: str = "auto",
                progress: bool = True) -> dict:
    """Answer log-likelihood of the host with each segment of the donor swapped in, for every M.

    Returns {"host": score, "donor_head": bool, "segments": {M: [{segment, layers, score, stderr, n}]},
    "items": {M: (segments, items) per-item scores}} with the host restored after each swap. A value of M
    larger than the number of layers has no segments to swap and is left out (``segments`` lacks it).
    """
    from tqdm.auto import tqdm

    from harness.measure import evaluate
    from harness.sources import models

    host_ref = models.ModelRef(str(host_dir))
    model = models.load_model(host_ref, dtype=dtype, device=device)
    tokenizer = models.load_tokenizer(host_ref)
    n_layers = len(model.model.layers)
    plan = [(m, i, part) for m in segment_counts if m <= n_layers for i, part in enumerate(segments(n_layers, m))]
    prefix = HostPrefix(model, [block_layers(part, last_k)[0] for _, _, part in plan])
    try:
        with prefix.capturing():
            reference = evaluate.answer_log_likelihood(model, tokenizer, records)
    except NonFiniteError as error:
        raise NonFiniteError(f"{host_dir}, unswapped: {error}") from None
    result = {"host": reference, "head_from": head_from, "last_k": last_k, "n_layers": n_layers,
              "segments": {}, "items": {}}
    for m, index, part in tqdm(plan, desc="layer swaps", disable=not progress, leave=False):
        layers = block_layers(part, last_k)
        with swapped(model, donor_dir, layers, head=head_from == "donor"):
            try:
                scored = evaluate.answer_log_likelihood(model, tokenizer, records,
                                                        forward=prefix.forward_from(layers[0]))
            except NonFiniteError as error:
                raise NonFiniteError(f"{host_dir} with layers {layers} of {donor_dir} swapped in: {error}") from None
        result["segments"].setdefault(m, []).append({"segment": index, "layers": layers, **{
            k: v for k, v in scored.items() if k != "per_item"}})
        result["items"].setdefault(m, []).append(scored["per_item"])
    del model, prefix
    return result


SWAP_FORMAT = 1  # bump when the scores a swap writes change meaning


def cached_swap_scores(host_dir: Path, donor_dir: Path, records: list[dict], segment_counts: tuple[int, ...],
                       head_from: str = "host", last_k: int | None = None, dtype: str = "float32",
                       device: str = "auto", progress: bool = True) -> dict:
    """``swap_scores``, read back from the cache when the same host and donor files were scored on the same
    items with the same settings: a pair's C3 tests, its report and a control that is another pair run
    backwards share one scoring, and a direction scored before an interruption is not scored again."""
    from harness import cache
    from harness.sources import models

    key = cache.stable_hash({
        "format": SWAP_FORMAT, "records": cache.stable_hash(records), "segment_counts": list(segment_counts),
        "head_from": head_from, "last_k": last_k, "dtype": dtype,
        "host": models.files_fingerprint(models.ModelRef(str(host_dir))),
        "donor": models.files_fingerprint(models.ModelRef(str(donor_dir)))})
    path = cache.cache_root() / "swaps" / f"{key}.json"
    if path.is_file():
        return _from_json(json.loads(path.read_text()))
    result = swap_scores(host_dir, donor_dir, records, segment_counts, head_from, last_k, dtype, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.write_json_atomic(path, result)
    return result


def _from_json(stored: dict) -> dict:
    """A stored result with its segment counts as integers again (JSON keys are strings)."""
    return {**stored, "segments": {int(m): rows for m, rows in stored["segments"].items()},
            "items": {int(m): rows for m, rows in stored["items"].items()}}
