"""Hybrid models: one model with a block of layers taken from its pair partner (§4.3, Fig. 6).

Weights are copied in place, tensor by tensor from the donor's safetensors
files, into the same layer positions (a module moved to another index would keep
its ``layer_idx`` and change cached generation), and copied back afterwards: no
second model and no deep copy per configuration. ``swapped`` restores the host
bit for bit, also when the block inside it raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.depth import segments
from harness.errors import BadInputError, NonFiniteError
from harness.measure.weights import _read, safetensors_index
from harness.sources.layouts import Layout, count_experts, layout_of
from harness.sources.models import UnsupportedModelError

DIRECTIONS = {"base_with_sft_block": ("base", "sft"), "sft_with_base_block": ("sft", "base")}


def block_layers(segment: list[int], last_k: int | None = None) -> list[int]:
    """The layers a swap replaces: the whole segment (the paper's description), or its last k (its code)."""
    if last_k is None:
        return list(segment)
    if last_k < 1:
        raise BadInputError("last_k must be at least 1")
    return list(segment[-last_k:])


class DonorMismatchError(BadInputError):
    """The donor checkpoint lacks a tensor the host's swapped layers have, or holds it in another shape."""


def _swapped_names(host, layout: Layout, layers: list[int], head: bool) -> list[str]:
    wanted = tuple(layout.layer_prefix(layer) for layer in layers)
    names = [name for name, _ in host.named_parameters() if name.startswith(wanted)]
    if head:
        heads = (layout.final_norm + ".",)
        output = host.get_output_embeddings()
        tied = output is not None and output.weight is host.get_input_embeddings().weight
        names += [name for name, _ in host.named_parameters() if name.startswith(heads)]
        if output is not None and not tied:
            names += [name for name, parameter in host.named_parameters() if parameter is output.weight]
    return names


def _donor_reader(host, layout: Layout, donor: dict[str, Path], donor_dir: Path):
    """A function giving, for an in-memory parameter name of the host, the donor's tensor in the host's
    in-memory form: read by its on-disk name, or, for a mixture of experts' fused parameter, stacked from the
    donor's one-tensor-per-expert files as transformers does at load."""
    disk_layers = layout.disk_layer_prefix(donor)
    experts = count_experts(host.config)

    def read(name: str) -> torch.Tensor:
        for candidate in layout.disk_candidates(name, disk_layers):
            if candidate in donor:
                return _read(donor[candidate], candidate)
        if name.startswith(layout.layers + "."):
            number, _, suffix = name[len(layout.layers) + 1 :].partition(".")
            on_disk = f"{disk_layers or layout.disk_layers[0]}.{number}."
            sources = layout.expert_sources(suffix, experts)
            if sources is not None and all(on_disk + s in donor for group in sources for s in group):
                return torch.stack(
                    [torch.cat([_read(donor[on_disk + s], on_disk + s) for s in group]) for group in sources]
                )
        raise DonorMismatchError(
            f"the donor checkpoint {donor_dir} lacks {name} (looked for "
            f"{', '.join(layout.disk_candidates(name, disk_layers))}): is it a "
            f"{layout.family} checkpoint of the host's architecture?"
        )

    return read


@contextmanager
def swapped(host, donor_dir: Path, layers: list[int], head: bool = False) -> Iterator[list[str]]:
    """Within the block, ``host`` runs with ``layers`` (0-based decoder indices; every tensor of them,
    norms, router and experts included) and, with ``head``, the final norm and output head of the donor
    checkpoint. Yields the swapped parameter names."""
    layout = layout_of(host)
    donor = safetensors_index(Path(donor_dir))
    parameters = dict(host.named_parameters())
    names = _swapped_names(host, layout, layers, head)
    read = _donor_reader(host, layout, donor, Path(donor_dir))
    saved = {}
    try:
        with torch.no_grad():
            for name in names:
                target = parameters[name]
                incoming = read(name)
                if incoming.is_floating_point() and not torch.isfinite(incoming).all():
                    raise UnsupportedModelError(f"{donor_dir} has non-finite (NaN or infinite) weights in {name}")
                if incoming.shape != target.shape:
                    vocabulary = (
                        " (the two models' vocabularies differ: take the host's head)"
                        if head and not name.startswith(layout.layers)
                        else ""
                    )
                    raise DonorMismatchError(
                        f"{name}: donor shape {tuple(incoming.shape)}, host {tuple(target.shape)}{vocabulary}"
                    )
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
    there: for the call, layers 0..a−1 are replaced by modules that pass their input through, and layer a
    gets the kept states in place of its input. Every layer keeps its index (families that alternate
    sliding and full attention choose a layer's mask by its index), whatever the family does to its
    embeddings (Gemma and Granite scale them) happens to states that are then replaced, and masks and
    positions are made from the same batch as before: every logit is the one a full forward pass gives.
    """

    def __init__(self, model, starts: list[int], budget: int = PREFIX_BUDGET_BYTES):
        self.model = model
        self.starts = sorted(set(starts) - {0})  # a swap from layer 0 gains nothing
        self.states: dict[int, list[torch.Tensor]] = {start: [] for start in self.starts}
        self.budget, self.bytes = budget, 0

    @contextmanager
    def capturing(self) -> Iterator[None]:
        layers = layout_of(self.model).decoder_layers(self.model)

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
        layers = layout_of(self.model).decoder_layers(self.model)

        def forward(number, ids, mask):
            kept = self.states[start][number]

            def substitute(module, args, kwargs):
                if args:
                    return (kept, *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": kept}

            originals = [layers[i] for i in range(start)]
            handle = layers[start].register_forward_pre_hook(substitute, with_kwargs=True)
            try:
                for i in range(start):
                    layers[i] = _PassThrough()
                return self.model(input_ids=ids, attention_mask=mask).logits
            finally:
                handle.remove()
                for i, layer in enumerate(originals):
                    layers[i] = layer

        return forward


class _PassThrough(torch.nn.Module):
    """A decoder layer that returns its input: the layers a hybrid's kept states have already been through."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def swap_scores(
    host_dir: Path,
    donor_dir: Path,
    records: list[dict],
    segment_counts: tuple[int, ...] = (3, 5, 10),
    head_from: str = "host",
    last_k: int | None = None,
    dtype: str = "float32",
    device: str = "auto",
    progress: bool = True,
) -> dict:
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
    n_layers = len(layout_of(model).decoder_layers(model))
    plan = [(m, i, part) for m in segment_counts if m <= n_layers for i, part in enumerate(segments(n_layers, m))]
    prefix = HostPrefix(model, [block_layers(part, last_k)[0] for _, _, part in plan])
    try:
        with prefix.capturing():
            reference = evaluate.answer_log_likelihood(model, tokenizer, records)
    except NonFiniteError as error:
        raise NonFiniteError(f"{host_dir}, unswapped: {error}") from None
    result = {
        "host": reference,
        "head_from": head_from,
        "last_k": last_k,
        "n_layers": n_layers,
        "segments": {},
        "items": {},
    }
    for m, index, part in tqdm(plan, desc="layer swaps", disable=not progress, leave=False):
        layers = block_layers(part, last_k)
        with swapped(model, donor_dir, layers, head=head_from == "donor"):
            try:
                scored = evaluate.answer_log_likelihood(
                    model, tokenizer, records, forward=prefix.forward_from(layers[0])
                )
            except NonFiniteError as error:
                raise NonFiniteError(f"{host_dir} with layers {layers} of {donor_dir} swapped in: {error}") from None
        result["segments"].setdefault(m, []).append(
            {"segment": index, "layers": layers, **{k: v for k, v in scored.items() if k != "per_item"}}
        )
        result["items"].setdefault(m, []).append(scored["per_item"])
    del model, prefix
    return result


SWAP_FORMAT = 1  # bump when the scores a swap writes change meaning


def cached_swap_scores(
    host_dir: Path,
    donor_dir: Path,
    records: list[dict],
    segment_counts: tuple[int, ...],
    head_from: str = "host",
    last_k: int | None = None,
    dtype: str = "float32",
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """``swap_scores``, read back from the cache when the same host and donor files were scored on the same
    items with the same settings: a pair's C3 tests, its report and a control that is another pair run
    backwards share one scoring, and a direction scored before an interruption is not scored again."""
    from harness import cache
    from harness.sources import models

    key = cache.stable_hash(
        {
            "format": SWAP_FORMAT,
            "records": cache.stable_hash(records),
            "segment_counts": list(segment_counts),
            "head_from": head_from,
            "last_k": last_k,
            "dtype": dtype,
            "host": models.files_fingerprint(models.ModelRef(str(host_dir))),
            "donor": models.files_fingerprint(models.ModelRef(str(donor_dir))),
        }
    )
    path = cache.cache_root() / "swaps" / f"{key}.json"
    if path.is_file():
        return _from_json(json.loads(path.read_text()))
    result = swap_scores(host_dir, donor_dir, records, segment_counts, head_from, last_k, dtype, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache.write_json_atomic(path, result)
    return result


def _from_json(stored: dict) -> dict:
    """A stored result with its segment counts as integers again (JSON keys are strings)."""
    return {
        **stored,
        "segments": {int(m): rows for m, rows in stored["segments"].items()},
        "items": {int(m): rows for m, rows in stored["items"].items()},
    }
