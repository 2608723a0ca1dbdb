"""Where each model family keeps its parts: the one place that knows a checkpoint's layout.

Everything that addresses a part of a model by name goes through a ``Layout``: the hooks of the capture
(decoder layers, final norm), the weight change of eq. 1 (the Q/K/V/O tensors on disk, fused or not),
the swaps (which tensors a layer has, in memory and on disk), the LoRA targets, and the dry run.

Two namings meet here. In memory, transformers 5 fuses some tensors at load: a mixture of experts keeps
all its experts in two 3-D parameters (``mlp.experts.gate_up_proj``, ``mlp.experts.down_proj``) and a
Mixtral's router is ``mlp.gate``. On disk, checkpoints keep their original names (one tensor per expert,
``block_sparse_moe.*`` for Mixtral, ``embed_out`` for GPT-NeoX's head, ``language_model.model.*`` for
Gemma 3's multimodal checkpoints), and ``save_pretrained`` writes them back that way. A layout maps the
first to the second, so a swap can stream a donor's layer from its files tensor by tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from harness.errors import BadInputError

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")  # Θ^(l) of eq. 1, in Llama's names
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
LLAMA_MODULES = {**{m: f"self_attn.{m}" for m in ATTENTION_MODULES}, **{m: f"mlp.{m}" for m in MLP_MODULES}}


@dataclass(frozen=True)
class Layout:
    """The parts of one family's decoder, by module path.

    ``modules`` maps each projection, named as Llama names it (q_proj ... down_proj: the names the claims
    config and the LoRA arms use), to the module inside a layer that computes it. Several projections may
    share one fused module; ``fused`` says how such a module stacks their rows:
    "qkv" (all of Q, then K, then V: Phi-3), "qkv_per_head" (for each head its q, k and v rows: GPT-NeoX) or
    "halves" (gate, then up: Phi-3's ``gate_up_proj``).
    """

    family: str
    model_types: tuple[str, ...]
    decoder: str = "model"  # the module that embeds, runs the layers and applies the final norm
    layers: str = "model.layers"
    final_norm: str = "model.norm"
    modules: Mapping[str, str] = field(default_factory=lambda: dict(LLAMA_MODULES))
    fused: Mapping[str, str] = field(default_factory=dict)  # module -> how its rows are stacked
    router: str | None = None  # a mixture of experts' router module inside a layer
    experts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # fused parameter -> per-expert files
    disk_layers: tuple[str, ...] = ("model.layers",)  # where the layers' tensors are on disk (first found wins)
    disk_renames: tuple[tuple[str, str], ...] = ()  # (in-memory pattern, on-disk replacement) for other names
    notes: str = ""

    # --- in memory -----------------------------------------------------------------------

    def decoder_layers(self, model) -> torch.nn.ModuleList:
        return model.get_submodule(self.layers)

    def final_norm_module(self, model) -> torch.nn.Module:
        return model.get_submodule(self.final_norm)

    def decoder_module(self, model) -> torch.nn.Module:
        return model.get_submodule(self.decoder)

    def layer_prefix(self, layer: int) -> str:
        """The in-memory name prefix of decoder layer ``layer`` (0-based index)."""
        return f"{self.layers}.{layer}."

    def lora_targets(self, projections: tuple[str, ...]) -> tuple[str, ...]:
        """The module names peft adapts for ``projections`` (Llama's names): a fused module is one target,
        and a projection the family does not have is refused."""
        missing = [p for p in projections if p not in self.modules]
        if missing:
            raise BadInputError(
                f"{self.family} models have no {', '.join(missing)} (their projections: {', '.join(self.modules)})"
            )
        return tuple(dict.fromkeys(self.modules[p].rsplit(".", 1)[-1] for p in projections))

    def projections_of(self, module: str) -> tuple[str, ...]:
        """The projections (Llama's names) a module of a layer computes, in row order."""
        return tuple(p for p, m in self.modules.items() if m == module)

    def split_rows(self, module: str, weight: torch.Tensor, config) -> dict[str, torch.Tensor]:
        """The rows of a fused module's weight (or bias) that compute each of its projections, as views:
        how the family's forward reads them (Phi-3: ``qkv[..., :H·d]``, then K·d and K·d; GPT-NeoX: per
        head, q, k, v of d rows each; Phi-3's ``gate_up_proj``: its two halves)."""
        kind = self.fused.get(module)
        names = self.projections_of(module)
        if kind is None:
            return {names[0]: weight} if len(names) == 1 else {}
        if kind == "halves":
            half = weight.shape[0] // 2
            return dict(zip(names, (weight[:half], weight[half:]), strict=True))
        config = text_config(config)
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if kind == "qkv":
            kv_heads = getattr(config, "num_key_value_heads", None) or heads
            q, k = heads * head_dim, kv_heads * head_dim
            return dict(zip(names, (weight[:q], weight[q : q + k], weight[q + k :]), strict=True))
        grouped = weight.reshape(heads, 3, head_dim, *weight.shape[1:])  # "qkv_per_head"
        return {name: grouped[:, index] for index, name in enumerate(names)}

    # --- on disk -------------------------------------------------------------------------

    def disk_layer_prefix(self, names) -> str | None:
        """Where the layers' tensors sit in a checkpoint whose tensor names are ``names``."""
        for candidate in self.disk_layers:
            if any(name.startswith(f"{candidate}.0.") for name in names):
                return candidate
        return None

    def disk_candidates(self, memory_name: str, disk_layers: str | None) -> list[str]:
        """The on-disk names an in-memory tensor may have, most likely first."""
        name = memory_name
        if disk_layers is not None and memory_name.startswith(self.layers + "."):
            name = disk_layers + memory_name[len(self.layers) :]
        candidates = [name]
        for pattern, replacement in self.disk_renames:
            renamed = re.sub(pattern, replacement, name)
            if renamed != name:
                candidates.append(renamed)
        return candidates

    def expert_sources(self, memory_suffix: str, experts: int) -> list[tuple[str, ...]] | None:
        """For a fused expert parameter (its name inside a layer), the on-disk names (inside the layer) of
        each expert's tensors, to be concatenated along rows in this order; None for any other parameter."""
        templates = self.experts.get(memory_suffix)
        if templates is None:
            return None
        return [tuple(t.format(e=e) for t in templates) for e in range(experts)]

    def part_of(self, layer_suffix: str) -> str | None:
        """What an on-disk tensor (its name after ``layers.N.``) is: a module of ``modules`` (its path),
        "router", "experts", or None (norms, biases and anything else)."""
        if layer_suffix in self.experts:  # saved fused (a 3-D parameter has no .weight)
            return "experts"
        if not layer_suffix.endswith(".weight"):
            return None
        module = layer_suffix.removesuffix(".weight")
        if module in self.modules.values():
            return module
        if self.router and module in (self.router, *self._renamed(self.router)):
            return "router"
        if self.experts and self._is_per_expert(module):
            return "experts"
        return None

    def _renamed(self, module: str) -> list[str]:
        # a layer-relative module as it may appear on disk (the renames are written on full tensor names)
        full = f"{self.layers}.0.{module}.weight"
        return [
            re.sub(p, r, full).split(".0.", 1)[1].removesuffix(".weight")
            for p, r in self.disk_renames
            if re.search(p, full)
        ]

    def _is_per_expert(self, module: str) -> bool:
        templates = {t.removesuffix(".weight") for group in self.experts.values() for t in group}
        return any(re.fullmatch(re.escape(t).replace(r"\{e\}", r"\d+"), module) for t in templates)


# --- the families ------------------------------------------------------------------------------

_QWEN_EXPERTS = {
    "mlp.experts.gate_up_proj": ("mlp.experts.{e}.gate_proj.weight", "mlp.experts.{e}.up_proj.weight"),
    "mlp.experts.down_proj": ("mlp.experts.{e}.down_proj.weight",),
}

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "llama-like",
        (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "olmo3",
            "smollm3",
            "granite",
        ),
        notes="Llama 3, Mistral, Qwen 2/2.5/3, Gemma 1/2/3 (text), OLMo 1/2/3, SmolLM3, Granite",
    ),
    Layout(
        "gemma3",
        ("gemma3",),
        decoder="model.language_model",
        layers="model.language_model.layers",
        final_norm="model.language_model.norm",
        disk_layers=("language_model.model.layers", "model.language_model.layers"),
        disk_renames=(
            (r"^model\.language_model\.norm\.", "language_model.model.norm."),
            (r"^lm_head\.", "language_model.lm_head."),
        ),
        notes="Gemma 3 (4B and larger), an image-text model whose text decoder is analysed",
    ),
    Layout(
        "mixtral",
        ("mixtral",),
        modules={m: f"self_attn.{m}" for m in ATTENTION_MODULES},
        router="mlp.gate",
        experts={
            "mlp.experts.gate_up_proj": (
                "block_sparse_moe.experts.{e}.w1.weight",
                "block_sparse_moe.experts.{e}.w3.weight",
            ),
            "mlp.experts.down_proj": ("block_sparse_moe.experts.{e}.w2.weight",),
        },
        disk_renames=((r"\.mlp\.gate\.", ".block_sparse_moe.gate."),),
        notes="Mixtral",
    ),
    Layout(
        "qwen-moe",
        ("qwen3_moe", "qwen2_moe", "olmoe"),
        router="mlp.gate",
        experts=_QWEN_EXPERTS,
        notes="Qwen3-MoE, Qwen2-MoE, OLMoE (dense layers of a sparse model keep mlp.*_proj)",
    ),
    Layout(
        "phi3",
        ("phi3",),
        modules={
            **{m: "self_attn.qkv_proj" for m in ATTENTION_MODULES[:3]},
            "o_proj": "self_attn.o_proj",
            "gate_proj": "mlp.gate_up_proj",
            "up_proj": "mlp.gate_up_proj",
            "down_proj": "mlp.down_proj",
        },
        fused={"self_attn.qkv_proj": "qkv", "mlp.gate_up_proj": "halves"},
        notes="Phi-3",
    ),
    Layout(
        "gpt_neox",
        ("gpt_neox",),
        decoder="gpt_neox",
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        modules={
            **{m: "attention.query_key_value" for m in ATTENTION_MODULES[:3]},
            "o_proj": "attention.dense",
            "up_proj": "mlp.dense_h_to_4h",
            "down_proj": "mlp.dense_4h_to_h",
        },
        fused={"attention.query_key_value": "qkv_per_head"},
        disk_layers=("gpt_neox.layers",),
        disk_renames=((r"^lm_head\.", "embed_out."),),
        notes="GPT-NeoX, Pythia",
    ),
)

SUPPORTED_MODEL_TYPES = tuple(t for layout in LAYOUTS for t in layout.model_types)
_BY_TYPE = {t: layout for layout in LAYOUTS for t in layout.model_types}
# a checkpoint with no config.json (a bare folder of tensors) is read with the common naming
DEFAULT_LAYOUT = LAYOUTS[0]


class UnknownFamilyError(BadInputError):
    """A model type whose layout the harness does not know."""


def text_config(config):
    """The decoder's own config (an image-text model keeps it apart, as ``text_config``)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def layout_of_type(model_type: str | None, name: str = "the model") -> Layout:
    try:
        return _BY_TYPE[model_type]
    except KeyError:
        raise UnknownFamilyError(
            f"{name} is a {model_type!r} model, a family whose layout the harness does not know; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        ) from None


def layout_of(model_or_config) -> Layout:
    """The layout of a loaded model or of its config."""
    config = getattr(model_or_config, "config", model_or_config)
    return layout_of_type(getattr(config, "model_type", None), type(model_or_config).__name__)


def decoder_layers(model) -> torch.nn.ModuleList:
    """A loaded model's decoder layers, where its family keeps them."""
    return layout_of(model).decoder_layers(model)


def layout_of_checkpoint(directory) -> Layout:
    """The layout of a checkpoint folder, from its config.json (a folder without one: the common naming)."""
    import json
    from pathlib import Path

    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        return DEFAULT_LAYOUT
    return layout_of_type(json.loads(config_file.read_text()).get("model_type"), str(directory))


def count_experts(config) -> int:
    config = text_config(config)
    for name in ("num_local_experts", "num_experts", "n_routed_experts"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def family_table() -> str:
    """One line per family: the model types and where its parts are (for ``harness list`` and the docs)."""
    lines = []
    for layout in LAYOUTS:
        attention = "fused Q/K/V" if any(k.startswith("qkv") for k in layout.fused.values()) else "Q/K/V/O"
        moe = ", router and experts" if layout.experts else ""
        lines.append(f"  {layout.family:<11} {layout.layers:<28} {attention}{moe}: {', '.join(layout.model_types)}")
    return "\n".join(lines)
