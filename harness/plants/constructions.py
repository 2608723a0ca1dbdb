"""How each planted control's models are made from the tiny pair's: the constructions the catalogue names.

Each construction changes a loaded model in place, ``construction(model, control, seed)``. Its cache key is
derived from its own code and every constant it reads (``harness.plants.build.code_version``): change one
and the controls built with it are built again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from harness import depth
from harness.plants import emergence
from harness.sources import zoo
from harness.sources.layouts import ATTENTION_MODULES, MLP_MODULES, decoder_layers


class Planted(Protocol):
    """What a construction reads of the control it makes (a ``catalogue.Control``)."""

    name: str
    profile: Callable[[float], float]
    dose: float


SOURCE_PAIR = "tiny_olmo2"  # the tiny pair every control is made from

PLATEAU_GAIN = 0.02  # the plateau layers' writes, against the embeddings' RMS of 1
TRANSITION_GAIN = 0.3  # the first layer's write: 15 plateau writes, small enough to keep the embeddings' spread
LAST_GAIN = 50.0  # the last layer's write


def _planted_modules(layer):
    yield from ((name, getattr(layer.self_attn, name)) for name in ATTENTION_MODULES)
    yield from ((name, getattr(layer.mlp, name)) for name in MLP_MODULES)


def _residual_write_gains(layer) -> list[torch.Tensor]:
    """The weights that set how strongly a layer writes into the residual stream.

    OLMo-2 normalises each block's output before adding it (post-attention and
    post-feedforward norms), so their gains set the write's size; a pre-norm
    model (Mistral) has no such norm, and its output projections do.
    """
    if hasattr(layer, "post_feedforward_layernorm"):
        return [layer.post_attention_layernorm.weight, layer.post_feedforward_layernorm.weight]
    return [layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight]


def plant(model, control: Planted, seed: int = 0) -> None:
    """Perturb every decoder layer of ``model`` in place by the control's depth profile.

    Layer l gets Gaussian noise on all its projections, of RMS ``scale`` times that projection's RMS over
    all layers (one reference per projection: the weight change of eq. 1 then follows the profile, not the
    layers' own weight norms, which differ from one build of the tiny pair to the next), and its writes into
    the residual stream are amplified by (1 + ``scale``): a change that moves the representation as surely
    as it moves the weights.
    """
    layers = decoder_layers(model)
    count = len(layers)
    with torch.no_grad():
        reference = {
            name: torch.stack([module.weight.pow(2).mean() for module in modules]).mean().sqrt()
            for name, modules in _modules_by_name(layers).items()
        }
        for index, layer in enumerate(layers):
            row = depth.row_of_layer(index)  # the depth profile is read at the end of the layer
            scale = control.profile(row / count)
            for module_index, (name, module) in enumerate(_planted_modules(layer)):
                weight = module.weight
                generator = torch.Generator().manual_seed(seed * 100_003 + row * 101 + module_index)
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.add_(noise * scale * reference[name])
            for gain in _residual_write_gains(layer):
                gain.mul_(1 + scale)


def _modules_by_name(layers) -> dict[str, list]:
    """Each planted projection's modules, one per layer."""
    grouped: dict[str, list] = {}
    for layer in layers:
        for name, module in _planted_modules(layer):
            grouped.setdefault(name, []).append(module)
    return grouped


def confine(model, control: Planted | None = None, seed: int = 0) -> None:
    """Confine the residual stream of ``model`` to one coordinate at every layer (``planted_bottleneck``).

    The embeddings keep one coordinate (the one with the most energy) and every
    residual write (``_residual_write_gains``) is masked to it, so every state at
    every layer, token-level or mean-pooled, is a multiple of one basis vector.
    A rank-one matrix has matrix entropy 0 (eqs. 2-3) and effective rank 1
    (eq. 4), the least these metrics can be, rank deficiency min(N, D) − 1, the
    most a non-zero matrix can have, and at least (D − 1)/D of its entries are
    exactly zero (sparsity). Against any base whose representations span more
    than one direction, SFT − base is therefore negative for both entropies and
    effective rank and positive for rank deficiency and sparsity, at every layer.
    Curvature is not determined: a one-dimensional path turns back (angle π) or
    goes on (angle 0) by the token sequence alone.
    """
    embedding = model.get_input_embeddings().weight
    keep = int(embedding.pow(2).mean(dim=0).argmax())
    mask = torch.zeros(embedding.shape[1], dtype=embedding.dtype)
    mask[keep] = 1.0
    with torch.no_grad():
        embedding.mul_(mask)
        for layer in decoder_layers(model):
            for write in _residual_write_gains(layer):  # the hidden dimension is the first axis of each
                write.mul_(mask.view(-1, *([1] * (write.ndim - 1))))


SMOOTH_GAIN = 1.0e4  # the first layer's write, against the O(1) writes of the others: see ``smooth``


def smooth(model, control: Planted | None = None, seed: int = 0) -> None:
    """Make every state of ``model`` a smoothed path over the tokens (``planted_smooth``).

    The first decoder layer's queries are zeroed, so its attention logits are all
    equal and each token attends uniformly to itself and every earlier token: the
    attention output is the running mean m_t of the prefix's values. Its residual
    write is amplified by ``SMOOTH_GAIN``, so it dominates that state and, since
    every later write is bounded by its output norm's gain, every later one.
    Curvature (eq. 5) is the mean angle between consecutive steps. The steps of a
    running mean, m_{t+1} − m_t = (v_{t+1} − m_t)/(t + 2), are uncorrelated for
    values that vary independently from token to token (their covariance is
    −σ²/(t + 2) + σ²/(t + 2) = 0), so they meet at about 90° (curvature ≈ 1/2);
    a path of states that follow the current token (the base: h_t ≈ f(x_t)) has
    consecutive steps sharing h_{t+1} with opposite signs (correlation −1/2,
    about 120°, curvature ≈ 2/3). The SFT's curvature is therefore lower at every
    layer. Entropy, rank and sparsity are not determined by it.
    """
    first = decoder_layers(model)[0]
    with torch.no_grad():
        first.self_attn.q_proj.weight.zero_()
        _residual_write_gains(first)[0].mul_(SMOOTH_GAIN)  # the attention write (OLMo-2: its output norm's gain)


def stages(
    model,
    control: Planted | None = None,
    seed: int = 0,
    transition: bool = True,
    collapse: bool = True,
    bottleneck_layer: int = -1,
    last_gain: float = LAST_GAIN,
) -> None:
    """Overwrite ``model`` (OLMo-2) with a hand-built network in the three stages of C6 (§4.2, Fig. 2).

    Embeddings are standard normal. No layer attends (its attention write's gain is 0); each writes a random
    MLP's output through its post-feedforward norm, so the write's RMS is that norm's gain: 0.3 at the first
    layer (the transition: 15 times a plateau write), 0.02 on the plateau. The last layer's MLP has equal
    gate and up projections and a non-negative down projection into one coordinate, so its output there,
    Σ w·silu(z)·z, is never negative, and the normalised write is +50·√D on that coordinate for every
    token: every pooled state gets the same large vector, its effective rank falls towards 1 (from about
    5.8 on the plateau) and its spectral norm grows about fiftyfold. ``transition=False`` makes the first
    layer as quiet as the plateau; ``collapse=False`` makes the last write as large but random in every
    direction (the spectral norm grows, the rank does not fall); ``bottleneck_layer`` moves that last write
    to another layer (the last one then writes like the plateau).
    """
    generator = torch.Generator().manual_seed(seed + 7919)

    def normal(tensor: torch.Tensor, std: float) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std)

    layers = decoder_layers(model)
    with torch.no_grad():
        normal(model.get_input_embeddings().weight, 1.0)
        for index, layer in enumerate(layers):
            layer.post_attention_layernorm.weight.zero_()
            mlp = layer.mlp
            for module in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                normal(module.weight, module.weight.shape[1] ** -0.5)
            gain = TRANSITION_GAIN if index == 0 and transition else PLATEAU_GAIN
            if index == bottleneck_layer % len(layers):
                gain = last_gain
                if collapse:
                    _write_a_constant(mlp)
            layer.post_feedforward_layernorm.weight.fill_(gain)


STEADY_COORDINATE = 1.0  # planted_stages_no_explosion: coordinate 0 of every state, which no layer writes


def task_token_frequencies(vocabulary: int, texts: int = 2000) -> torch.Tensor:
    """How often each token of the tiny pair's tokenizer occurs in generated GSM8K-format training text
    (the format of the default probe set), as shares that sum to 1."""
    from transformers import AutoTokenizer

    from harness.sources import synthetic

    tokenizer = AutoTokenizer.from_pretrained(zoo.build_pair(SOURCE_PAIR, progress=False).base_dir)
    counts = torch.zeros(vocabulary)
    for index in range(texts):
        record = synthetic.gsm8k_record(0, "train", index)
        ids = tokenizer(f"Question: {record['question']}\nAnswer: {record['answer']}")["input_ids"]
        counts += torch.bincount(torch.tensor(ids), minlength=vocabulary).float()
    return counts / counts.sum()


def stages_without_explosion(
    model, control: Planted | None = None, seed: int = 0, frequencies: torch.Tensor | None = None
) -> None:
    """``stages`` whose last layer collapses the rank without raising the spectral norm (C6's explode
    condition alone fails; ``planted_stages_no_explosion``).

    Coordinate 0 of every embedding is ``STEADY_COORDINATE`` and no layer writes it (every output norm's
    gain is 0 there). The other coordinates of the embeddings are centred on the token ``frequencies``
    (default: ``task_token_frequencies``) and each row rescaled to RMS 1: a mean-pooled state is then not
    dominated by the tokens every text shares, and the plateau's effective rank is several times the
    collapse threshold's floor (the rank of a last state can fall to 1, no lower). The last layer's MLP
    computes −h on every coordinate but 0 exactly: unit pairs with gates ±h_i and ups ±h_0 / h_0 = ±1 give
    silu(h_i) − silu(−h_i) = h_i. Its output norm's gain is the typical RMS of those coordinates, so the
    write cancels them up to the few per cent by which their norm varies from token to token, and the
    last state is nearly one vector, ``STEADY_COORDINATE`` on coordinate 0, for every token: its
    effective rank falls towards 1 while its largest singular value, never below that coordinate's
    column, stays at the plateau's.
    """
    layers = decoder_layers(model)
    dimension, hidden = model.config.hidden_size, model.config.intermediate_size
    if hidden < 2 * (dimension - 1):
        raise ValueError(f"the cancelling MLP needs {2 * (dimension - 1)} hidden units; the model has {hidden}")
    stages(model, control, seed, collapse=False, last_gain=PLATEAU_GAIN)
    embeddings = model.get_input_embeddings().weight
    if frequencies is None:
        frequencies = task_token_frequencies(len(embeddings))
    with torch.no_grad():
        rest = embeddings[:, 1:]
        for _ in range(3):  # centring and rescaling each row in turn: after three rounds both hold closely
            rest.sub_(frequencies.to(rest.dtype) @ rest)
            rest.mul_(rest.pow(2).mean(dim=1, keepdim=True).rsqrt())
        embeddings[:, 0] = STEADY_COORDINATE
        for layer in layers:
            layer.post_feedforward_layernorm.weight[0] = 0.0
        mlp = layers[-1].mlp
        for module in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            module.weight.zero_()
        for coordinate in range(1, dimension):
            for sign, unit in ((1.0, 2 * coordinate - 2), (-1.0, 2 * coordinate - 1)):
                mlp.gate_proj.weight[unit, coordinate] = sign
                mlp.up_proj.weight[unit, 0] = sign / STEADY_COORDINATE
                mlp.down_proj.weight[coordinate, unit] = -1.0
        # the RMS of the residual's coordinates but 0: embeddings of RMS 1, the transition's and plateau's writes
        typical = (1.0 + TRANSITION_GAIN**2 + (len(layers) - 2) * PLATEAU_GAIN**2) ** 0.5
        final = layers[-1].post_feedforward_layernorm.weight
        final.fill_(typical * ((dimension - 1) / dimension) ** 0.5)  # the norm divides by the RMS over all D
        final[0] = 0.0


def _write_a_constant(mlp) -> None:
    """Make ``mlp``'s output the same direction for every token: equal gate and up projections and a
    non-negative down projection into coordinate 0, so its output there, Σ w·silu(z)·z, is never negative and
    the post-feedforward norm turns it into the same vector (that norm's gain times √D on coordinate 0)."""
    mlp.up_proj.weight.copy_(mlp.gate_proj.weight)
    down = mlp.down_proj.weight
    keep = down[0].abs().clone()
    down.zero_()
    down[0] = keep


# C1's isolating negatives, built on ``stages``' hand-made network with every layer as quiet as its plateau.
OFFSET_GAIN = 0.5  # planted_offset: the constant vector the SFT's first layer writes, against embeddings of RMS 1
LATE_WRITE_GAIN = 1.0  # the write the SFT's last layer adds in both: a tail CKA drop
COMMON_GAIN = 100.0  # planted_common_write: the constant vector both models' last layer writes
EMBEDDING_NOISE = 0.08  # planted_common_write: the SFT's embeddings moved by this relative RMS


def quiet(model, control: Planted | None = None, seed: int = 0) -> None:
    """``stages`` with every layer writing like the plateau: no transition, no bottleneck."""
    stages(model, control, seed, transition=False, collapse=False, last_gain=PLATEAU_GAIN)


def offset_then_late(model, control: Planted | None = None, seed: int = 0) -> None:
    """The SFT of ``planted_offset``, made from ``quiet``: the first layer writes a constant vector instead
    (every later state moves by the same vector, so the mean shift is as large before the tail as in it,
    while centred CKA does not see a translation), and the last layer's write grows to ``LATE_WRITE_GAIN``
    (CKA and cosine drop in the tail)."""
    layers = decoder_layers(model)
    with torch.no_grad():
        _write_a_constant(layers[0].mlp)
        layers[0].post_feedforward_layernorm.weight.fill_(OFFSET_GAIN)
        layers[-1].post_feedforward_layernorm.weight.fill_(LATE_WRITE_GAIN)


def common_write(model, control: Planted | None = None, seed: int = 0) -> None:
    """The base of ``planted_common_write``: ``quiet``, except that the last layer writes the same large
    vector (``COMMON_GAIN``) for every token."""
    stages(model, control, seed, transition=False, last_gain=COMMON_GAIN)


def moved_under_common_write(model, control: Planted | None = None, seed: int = 0) -> None:
    """The SFT of ``planted_common_write``: its embeddings moved by ``EMBEDDING_NOISE`` (every state before
    the tail a little less aligned with the base's), and its last layer's attention, silent in the base,
    writing at ``LATE_WRITE_GAIN`` (a tail CKA drop and a mean-shift spike). The large vector both write at
    the last layer dominates that state, so its cosine with the base's is higher there than anywhere before:
    the cosine does not drop in the tail, and no other condition of C1 fails."""
    generator = torch.Generator().manual_seed(seed + 104_729)
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        noise = torch.randn(embeddings.shape, generator=generator, dtype=embeddings.dtype)
        embeddings.add_(noise * EMBEDDING_NOISE * embeddings.pow(2).mean().sqrt())
        decoder_layers(model)[-1].post_attention_layernorm.weight.fill_(LATE_WRITE_GAIN)


TRAP_GAIN = 1000.0  # how much larger the trapped layers' value and up projections are made (and the rest smaller)
RETENTION_TRAP_GAIN = 10.0  # planted_lora_retention's: large enough to forget, too small to throw the model off


def trap(model, layers: list[int], gain: float = TRAP_GAIN) -> None:
    """Rescale ``layers`` of ``model`` so that the function is unchanged but LoRA there throws it off (C4, C8).

    The value and up projections are multiplied by ``gain`` and the output and down projections divided by
    it: the value path is linear and the MLP is ``down(act(gate(x)) * up(x))``, so every output is the same
    (up to rounding). An adapter on the output or down projection reads a ``gain``-times larger input than
    the frozen weight it is added to, so from its first step the layer writes the adapter's direction,
    not its own, and the frozen layers after it read that. Which layers must not be adapted is known by
    construction. A layer near the output has few layers after it: its adapters recover within a few
    steps, which is why the planted studies train for two.
    """
    with torch.no_grad():
        for index in layers:
            layer = decoder_layers(model)[index]
            layer.self_attn.v_proj.weight.mul_(gain)
            layer.self_attn.o_proj.weight.div_(gain)
            layer.mlp.up_proj.weight.mul_(gain)
            layer.mlp.down_proj.weight.div_(gain)


def trap_band(band: str, gain: float = TRAP_GAIN) -> Callable:
    """A construction that traps the first and last 20% of layers (``"edges"``) or the layers between them
    (``"middle"``, the paper's mid-block), by ``depth.layer_groups``."""

    def construct(model, control: Planted | None = None, seed: int = 0) -> None:
        groups = depth.layer_groups(len(decoder_layers(model)))
        trap(model, groups["first"] + groups["last"] if band == "edges" else groups["middle"], gain)

    return construct


def reader_at(where: str | None) -> Callable:
    """A construction that makes a model the trained two-layer reader of ``harness.plants.emergence`` placed at the
    last two layers (``"late"``), the first two (``"early"``), or nowhere (``None``: identity blocks only)."""

    def construct(model, control: Planted | None = None, seed: int = 0) -> None:
        source = zoo.build_pair(SOURCE_PAIR, progress=False)
        reader = emergence.trained_reader(source.base_dir, source.info["key"], seed=seed)
        first = {"late": len(decoder_layers(model)) - emergence.READER_LAYERS, "early": 0, None: None}[where]
        emergence.place(model, reader, first)

    return construct


CONSTRUCTIONS: dict[str, Callable] = {
    "noise": plant,
    "bottleneck": confine,
    "smooth": smooth,
    "stages": stages,
    "stages_no_transition": lambda model, control=None, seed=0: stages(model, control, seed, transition=False),
    "stages_no_collapse": lambda model, control=None, seed=0: stages(model, control, seed, collapse=False),
    "stages_dosed": lambda model, control=None, seed=0: stages(model, control, seed, last_gain=control.dose),
    "stages_no_explosion": stages_without_explosion,
    "stages_mid_bottleneck": lambda model, control=None, seed=0: stages(
        model, control, seed, bottleneck_layer=len(decoder_layers(model)) // 2
    ),
    "reader_nowhere": reader_at(None),
    "reader_late": reader_at("late"),
    "reader_early": reader_at("early"),
    "quiet": quiet,
    "offset_then_late": offset_then_late,
    "common_write": common_write,
    "moved_under_common_write": moved_under_common_write,
    "trap_edges": trap_band("edges"),
    "trap_middle": trap_band("middle"),
    "trap_edges_tenfold": trap_band("edges", RETENTION_TRAP_GAIN),
    "trap_middle_tenfold": trap_band("middle", RETENTION_TRAP_GAIN),
}
TRAP_GAINS = {
    "trap_edges": TRAP_GAIN,
    "trap_middle": TRAP_GAIN,
    "trap_edges_tenfold": RETENTION_TRAP_GAIN,
    "trap_middle_tenfold": RETENTION_TRAP_GAIN,
}
