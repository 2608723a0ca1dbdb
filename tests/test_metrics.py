"""Each metric on a case small enough to compute by hand, and its degenerate inputs."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

from harness import metrics
from harness.measure import weights
from harness.measure.weights import CheckpointError
from harness.metrics import DegenerateInputError
from harness.sources import layouts

T = torch.tensor


def test_matrix_entropy_by_hand():
    z = T([[3.0, 0.0], [0.0, 1.0]])  # K = diag(9, 1): shares 0.9 and 0.1
    bits = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert metrics.matrix_entropy(z, normalize=False) == pytest.approx(bits)  # 0.4690
    assert metrics.matrix_entropy(z) == pytest.approx(bits / math.log2(2))
    assert metrics.matrix_entropy(z, alpha=2.0, normalize=False) == pytest.approx(-math.log2(0.81 + 0.01))
    # three rows in two dimensions: two equal directions reach the largest entropy a 3 x 2 matrix can have
    assert metrics.matrix_entropy(T([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(1.0)


def test_prompt_and_dataset_entropy_are_eqs_2_and_3():
    z = T([[3.0, 0.0], [0.0, 1.0]])
    assert metrics.prompt_entropy(z) == metrics.dataset_entropy(z) == metrics.matrix_entropy(z)


def test_effective_rank_by_hand():
    nats = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert metrics.effective_rank(T([[3.0, 0.0], [0.0, 1.0]])) == pytest.approx(math.exp(nats))  # 1.3842
    assert metrics.effective_rank(torch.eye(3)) == pytest.approx(3.0)


def test_rank_condition_and_spectral_norm_by_hand():
    z = torch.diag(T([4.0, 2.0, 0.0]))
    assert metrics.numerical_rank(z) == 2
    assert metrics.rank_deficiency(z) == 1
    assert metrics.condition_number(z) == pytest.approx(2.0)
    assert metrics.spectral_norm(z) == pytest.approx(4.0)


def test_rank_tolerance_counts_features_not_rows():
    # σ_2 / σ_1 = 1e-14 lies above D · ε = 4.4e-16 but below the N · ε of 2,000 rows (4.4e-13):
    # a tolerance that grew with N would call the repeated matrix rank one
    z = torch.diag(T([1.0, 1e-14], dtype=torch.float64))
    repeated = z.repeat(1000, 1)
    assert metrics.numerical_rank(z) == metrics.numerical_rank(repeated) == 2
    assert metrics.rank_deficiency(repeated) == 0
    assert metrics.condition_number(repeated) == pytest.approx(1e14, rel=1e-6)
    # float32 data carries float32 noise: the same ratio is a numerical zero there
    assert metrics.numerical_rank(z.float()) == 1


def test_sparsity_by_hand():
    assert metrics.sparsity(T([[0.001, 1.0], [0.5, -0.005]])) == 0.5
    assert metrics.sparsity(T([[0.001, 1.0], [0.5, -0.005]]), eps=0.6) == 0.75


def test_curvature_by_hand():
    assert metrics.curvature(T([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])) == pytest.approx(0.5)  # a right angle
    assert metrics.curvature(T([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]])) == pytest.approx(0.25)  # 45 degrees
    # two angles, 90 and 180 degrees: mean 135 degrees
    assert metrics.curvature(T([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.75)


def test_linear_cka_by_hand():
    x, y = T([[1.0], [2.0], [3.0]]), T([[1.0], [2.0], [4.0]])
    # one feature each: CKA is the squared correlation, 3² / (2 · 42/9)
    assert metrics.linear_cka(x, y) == pytest.approx(9 / (2 * 42 / 9))
    uncentered = (1 + 4 + 12) ** 2 / ((1 + 4 + 9) * (1 + 4 + 16))
    assert metrics.linear_cka(x, y, center=False) == pytest.approx(uncentered)


def test_cosine_and_mean_shift_by_hand():
    x, y = T([[1.0, 0.0], [1.0, 1.0]]), T([[0.0, 1.0], [1.0, 1.0]])
    assert metrics.cosine_similarity(x, y) == pytest.approx(0.5)
    assert metrics.mean_shift(T([[0.0, 0.0], [2.0, 0.0]]), T([[1.0, 1.0], [3.0, 1.0]])) == pytest.approx(math.sqrt(2))


def test_weight_change_by_hand(tmp_path):
    def save(name, tensors):
        (tmp_path / name).mkdir()
        save_file(tensors, tmp_path / name / "model.safetensors")
        return tmp_path / name

    base = save(
        "base",
        {
            "model.layers.0.self_attn.q_proj.weight": torch.zeros(2, 2),
            "model.layers.1.self_attn.k_proj.weight": torch.zeros(1, 1),
            "model.layers.1.self_attn.v_proj.weight": torch.zeros(1, 1),
            "model.layers.1.mlp.up_proj.weight": torch.zeros(1, 1),
            "model.embed_tokens.weight": torch.zeros(3, 2),
        },
    )
    sft = save(
        "sft",
        {
            "model.layers.0.self_attn.q_proj.weight": torch.ones(2, 2),
            "model.layers.1.self_attn.k_proj.weight": T([[3.0]]),
            "model.layers.1.self_attn.v_proj.weight": T([[4.0]]),
            "model.layers.1.mlp.up_proj.weight": T([[12.0]]),
            "model.embed_tokens.weight": torch.ones(3, 2),
        },
    )
    assert weights.weight_change(base, sft) == {1: pytest.approx(2.0), 2: pytest.approx(5.0)}
    with_mlp = weights.weight_change(base, sft, modules=layouts.ATTENTION_MODULES + layouts.MLP_MODULES)
    assert with_mlp[2] == pytest.approx(13.0)


def test_weight_change_reads_sharded_checkpoints(tmp_path):
    import json

    for name, value in (("base", 0.0), ("sft", 2.0)):
        folder = tmp_path / name
        folder.mkdir()
        save_file({"model.layers.0.self_attn.q_proj.weight": torch.full((1, 1), value)}, folder / "a.safetensors")
        save_file({"model.layers.0.self_attn.o_proj.weight": torch.full((1, 1), value)}, folder / "b.safetensors")
        (folder / "model.safetensors.index.json").write_text(
            json.dumps(
                {
                    "weight_map": {
                        "model.layers.0.self_attn.q_proj.weight": "a.safetensors",
                        "model.layers.0.self_attn.o_proj.weight": "b.safetensors",
                    }
                }
            )
        )
    assert weights.weight_change(tmp_path / "base", tmp_path / "sft") == {1: pytest.approx(math.sqrt(8))}


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.matrix_entropy(torch.zeros(3, 2)),
        lambda: metrics.matrix_entropy(T([[1.0, float("nan")], [0.0, 1.0]])),
        lambda: metrics.matrix_entropy(T([[1.0, 2.0]])),  # one row: log min(N, D) = 0
        lambda: metrics.matrix_entropy(T([[1.0], [2.0]])),  # one feature: log min(N, D) = 0
        lambda: metrics.weighted_spectra(T([[1.0], [2.0]]), torch.full((3, 2), 0.5)),
        lambda: metrics.weighted_spectra(torch.zeros(3, 2), torch.full((3, 3), 1 / 3)),
        lambda: metrics.effective_rank(torch.zeros(2, 2)),
        lambda: metrics.condition_number(torch.zeros(2, 2)),
        lambda: metrics.curvature(T([[0.0], [1.0]])),  # fewer than 3 tokens
        lambda: metrics.curvature(torch.ones(4, 2)),  # every step has zero length
        lambda: metrics.linear_cka(torch.ones(3, 2), torch.randn(3, 2)),  # no variance
        lambda: metrics.linear_cka(torch.randn(3, 2), torch.randn(4, 2)),
        lambda: metrics.cosine_similarity(T([[0.0, 0.0], [1.0, 0.0]]), T([[1.0, 0.0], [1.0, 0.0]])),
        lambda: metrics.cosine_similarity(torch.randn(3, 2), torch.randn(3, 3)),
        lambda: metrics.mean_shift(torch.randn(3, 2), T([[float("inf"), 0.0]])),
        lambda: metrics.spectral_norm(torch.randn(3)),
    ],
)
def test_degenerate_input_is_a_clear_error_not_a_nan(call):
    with pytest.raises(DegenerateInputError):
        call()


def test_weight_change_refuses_unmatched_checkpoints(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no safetensors"):
        weights.weight_change(tmp_path / "empty", tmp_path / "empty")
    for name, shape in (("a", (2, 2)), ("b", (3, 2))):
        (tmp_path / name).mkdir()
        save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(shape)}, tmp_path / name / "m.safetensors")
    with pytest.raises(CheckpointError, match="shape"):
        weights.weight_change(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").mkdir()
    save_file({"other.weight": torch.zeros(1)}, tmp_path / "c" / "m.safetensors")
    with pytest.raises(CheckpointError, match="not in the SFT"):
        weights.weight_change(tmp_path / "a", tmp_path / "c")


def _per_sample(samples, alpha, eps):
    """The token-level metrics one sample and one layer at a time, as the paper defines them."""
    rows = {"prompt_entropy": [], "curvature": [], "token_sparsity": []}
    for h in samples:
        entropy, curve, sparse = [], [], []
        for layer in h:
            entropy.append(metrics.prompt_entropy(layer, alpha) if layer.shape[0] >= 2 else math.nan)
            try:
                curve.append(metrics.curvature(layer) if layer.shape[0] >= 3 else math.nan)
            except DegenerateInputError:
                curve.append(math.nan)
            sparse.append(metrics.sparsity(layer, eps))
        for name, values in zip(rows, (entropy, curve, sparse), strict=True):
            rows[name].append(values)
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in rows.items()}


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_batched_token_metrics_equal_the_per_sample_per_layer_definitions(alpha):
    """Every sample length (1 to more than D tokens), a repeated token (a zero step) and padding never counted."""
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randn(3, length, 6, generator=generator) for length in (1, 2, 3, 5, 9)]
    samples[3][:, 2] = samples[3][:, 1]  # a token repeated: its step has zero length and no angle
    samples[2][1, 2] = samples[2][1, 1]  # the only angle of a 3-token sample undefined at one layer: NaN
    batched = metrics.token_metrics(samples, alpha=alpha, sparsity_eps=0.5)
    expected = _per_sample(samples, alpha, 0.5)
    for name in expected:
        torch.testing.assert_close(batched[name], expected[name], rtol=1e-9, atol=1e-12, equal_nan=True)
    assert torch.isnan(batched["curvature"][2, 1]) and torch.isnan(batched["prompt_entropy"][0]).all()


def test_batched_token_metrics_refuse_non_finite_states():
    with pytest.raises(DegenerateInputError, match="NaN or infinite"):
        metrics.token_metrics([torch.tensor([[[1.0, float("nan")], [0.0, 1.0]]])])


# entries that overflow a float64 sum while each is finite, and the ones that make a sum NaN or infinite
EXTREMES = st.sampled_from([1.7e308, -1.7e308, math.inf, -math.inf, math.nan, 0.0, -0.0, 5e-324])


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), EXTREMES), min_size=1, max_size=24))
def test_the_finite_check_by_the_sum_agrees_with_testing_every_entry(values):
    from harness.metrics._checks import all_finite, as_matrix

    z = torch.tensor(values, dtype=torch.float64).reshape(1, -1)
    assert all_finite(z) == bool(torch.isfinite(z).all())
    if all_finite(z):
        assert as_matrix(z) is not None
    else:
        with pytest.raises(DegenerateInputError, match=f"holds {int((~torch.isfinite(z)).sum())} NaN or infinite"):
            as_matrix(z)


def test_a_matrix_whose_sum_overflows_is_still_finite():
    from harness.metrics._checks import as_matrix
    from harness.metrics.token_layers import padded_stack

    huge = torch.full((4, 3), 1.7e308, dtype=torch.float64)
    assert not math.isfinite(huge.sum())  # the screen fires, and the entries themselves are looked at
    assert as_matrix(huge).equal(huge)
    assert padded_stack([huge.reshape(2, 2, 3)])[0].equal(huge.reshape(1, 2, 2, 3))


def test_weight_change_blocks_of_rows_sum_to_the_whole_tensor():
    from harness.metrics.weights import squared_change as _squared_sums

    generator = torch.Generator().manual_seed(1)
    base = torch.randn(37, 11, generator=generator).to(torch.bfloat16)
    sft = (base.float() + 0.01 * torch.randn(37, 11, generator=generator)).to(torch.bfloat16)
    whole = (float(((sft.double() - base.double()) ** 2).sum()), float((base.double() ** 2).sum()))
    for block in (1, 11, 50, 10_000):  # a row at a time, several rows, more than the tensor
        assert _squared_sums(base, sft, block_elements=block) == pytest.approx(whole, rel=1e-12)
