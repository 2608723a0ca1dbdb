"""The metrics' mathematical invariants, checked on generated matrices (Hypothesis)."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from safetensors.torch import save_file

from harness import metrics
from harness.measure import weights
from harness.metrics.unbiased import debiased_linear_cka
from harness.sources import layouts
from harness.verdicts import intervals

TOL = dict(rel=1e-6, abs=1e-8)


@st.composite
def matrices(draw, min_rows=2, max_rows=12, min_cols=1, max_cols=10):
    rows = draw(st.integers(min_rows, max_rows))
    cols = draw(st.integers(min_cols, max_cols))
    values = draw(arrays(np.float64, (rows, cols), elements=st.floats(-10, 10, allow_nan=False, allow_subnormal=False)))
    z = torch.from_numpy(values)
    assume(z.norm() > 1e-3)
    return z


def centered_norm(z):
    return (z - z.mean(0)).norm()


seeds = st.integers(0, 2**31 - 1)


def orthogonal(size, seed):
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q


# --- CKA (eq. 6) -------------------------------------------------------------------------


@given(matrices())
def test_cka_of_a_matrix_with_itself_is_one(x):
    assume(centered_norm(x) > 1e-3)
    assert metrics.linear_cka(x, x) == pytest.approx(1.0, **TOL)


@given(matrices(), st.data())
def test_cka_is_symmetric_and_bounded(x, data):
    y = data.draw(matrices(min_rows=x.shape[0], max_rows=x.shape[0]))
    assume(centered_norm(x) > 1e-3 and centered_norm(y) > 1e-3)
    forward, backward = metrics.linear_cka(x, y), metrics.linear_cka(y, x)
    assert forward == pytest.approx(backward, **TOL)
    assert 0.0 <= forward <= 1.0


@given(matrices(), st.data(), seeds, st.floats(1e-3, 1e3))
def test_cka_is_invariant_to_rotation_scaling_and_translation(x, data, seed, scale):
    y = data.draw(matrices(min_rows=x.shape[0], max_rows=x.shape[0]))
    assume(centered_norm(x) > 1e-3 and centered_norm(y) > 1e-3)
    reference = metrics.linear_cka(x, y)
    rotated = x @ orthogonal(x.shape[1], seed)
    shifted = y + torch.linspace(-5, 5, y.shape[1], dtype=torch.float64)
    assert metrics.linear_cka(rotated, y) == pytest.approx(reference, rel=1e-6, abs=1e-7)
    assert metrics.linear_cka(x, scale * y) == pytest.approx(reference, rel=1e-6, abs=1e-7)
    assert metrics.linear_cka(x, shifted) == pytest.approx(reference, rel=1e-6, abs=1e-7)


@given(matrices(min_rows=6, max_rows=14), st.data(), seeds, st.floats(1e-2, 1e2))
def test_debiased_cka_is_symmetric_and_invariant_to_rotation_scaling_and_translation(x, data, seed, scale):
    y = data.draw(matrices(min_rows=x.shape[0], max_rows=x.shape[0]))
    assume(centered_norm(x) > 1e-2 and centered_norm(y) > 1e-2)
    try:
        reference = debiased_linear_cka(x, y)
    except metrics.DegenerateInputError:  # a self-HSIC estimated non-positive: too few samples for its spread
        assume(False)
    assume(reference.conditioning > 1e-6)  # not resting on the cancellation of far larger sums
    rotated = x @ orthogonal(x.shape[1], seed)
    shifted = y + torch.linspace(-5, 5, y.shape[1], dtype=torch.float64)
    for other in (
        debiased_linear_cka(y, x),
        debiased_linear_cka(rotated, y),
        debiased_linear_cka(x, scale * y),
        debiased_linear_cka(x, shifted),
    ):
        assert other.value == pytest.approx(reference.value, rel=1e-6, abs=1e-7)
    low, high = reference.interval(0.95)
    assert low <= reference.value <= high or not np.isfinite(reference.standard_error)


@given(matrices(min_rows=3))
def test_cka_gram_and_feature_forms_agree(x):
    # N < D takes the Gram form, N >= D the feature form: both must give eq. 6.
    assume(centered_norm(x) > 1e-3)
    wide = torch.cat([x, x.flip(0), torch.ones_like(x)] * 5, dim=1)
    xc, wc = x - x.mean(0), wide - wide.mean(0)
    kx, kw = xc @ xc.T, wc @ wc.T
    assume(kw.norm() > 1e-6)
    direct = float((kx * kw).sum() / (kx.norm() * kw.norm()))
    assert metrics.linear_cka(x, wide) == pytest.approx(direct, rel=1e-6, abs=1e-9)


# --- entropy (eqs. 2-3) -------------------------------------------------------------------

# Normalised entropy divides by log min(N, D) (eqs. 2-3), so it needs two features as well as two rows.


@given(matrices(min_cols=2), st.floats(0.0, 5.0))
def test_normalised_entropy_lies_in_unit_interval(z, alpha):
    assert -1e-12 <= metrics.matrix_entropy(z, alpha=alpha) <= 1 + 1e-9


@given(st.integers(2, 12), st.integers(2, 10), seeds)
def test_entropy_of_a_rank_one_matrix_is_zero(rows, cols, seed):
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(rows, 1, generator=generator, dtype=torch.float64)
    v = torch.randn(1, cols, generator=generator, dtype=torch.float64)
    assert metrics.matrix_entropy(u @ v) == pytest.approx(0.0, abs=1e-9)


@given(st.integers(2, 10), st.integers(0, 5), seeds, st.floats(0.1, 10.0), st.floats(0.0, 4.0))
def test_entropy_of_orthogonal_rows_of_equal_norm_is_one(rows, extra_cols, seed, norm, alpha):
    q = orthogonal(rows + extra_cols, seed)[:rows]  # orthonormal rows
    assert metrics.matrix_entropy(norm * q, alpha=alpha) == pytest.approx(1.0, rel=1e-9)


@given(matrices(min_cols=2), seeds, st.floats(1e-3, 1e3))
def test_entropy_is_invariant_to_rotation_and_scaling_of_features(z, seed, scale):
    reference = metrics.matrix_entropy(z)
    assert metrics.matrix_entropy(scale * z @ orthogonal(z.shape[1], seed)) == pytest.approx(reference, abs=1e-9)


@given(matrices(min_cols=2), st.floats(0.0, 3.0), st.floats(0.0, 3.0))
def test_renyi_entropy_does_not_increase_with_alpha(z, a, b):
    low, high = sorted((a, b))
    assert metrics.matrix_entropy(z, alpha=high) <= metrics.matrix_entropy(z, alpha=low) + 1e-9


# --- effective rank (eq. 4), rank, conditioning ---------------------------------------


@given(matrices())
def test_effective_rank_lies_between_one_and_the_rank(z):
    value = metrics.effective_rank(z)
    assert value >= 1 - 1e-9
    assert value <= metrics.numerical_rank(z) + 1e-6


@given(st.integers(1, 8), st.integers(0, 4), st.integers(0, 4), seeds, st.floats(0.1, 10.0))
def test_effective_rank_of_k_equal_singular_values_is_k(k, extra_rows, extra_cols, seed, sigma):
    rows, cols = k + extra_rows, k + extra_cols
    u = orthogonal(rows, seed)[:, :k]
    v = orthogonal(cols, seed + 1)[:, :k]
    z = sigma * u @ v.T
    assert metrics.effective_rank(z) == pytest.approx(k, rel=1e-9)
    assert metrics.numerical_rank(z) == k
    assert metrics.rank_deficiency(z) == min(rows, cols) - k
    assert metrics.condition_number(z) == pytest.approx(1.0, rel=1e-9)
    assert metrics.spectral_norm(z) == pytest.approx(sigma, rel=1e-9)


@given(matrices(), st.floats(1e-3, 1e3))
def test_spectral_norm_scales_and_condition_number_does_not(z, scale):
    # a condition number is only as accurate as (value × epsilon): leave the numerically singular out
    assume(metrics.condition_number(z) < 1e8)
    assert metrics.spectral_norm(scale * z) == pytest.approx(scale * metrics.spectral_norm(z), rel=1e-9)
    assert metrics.condition_number(scale * z) == pytest.approx(metrics.condition_number(z), rel=1e-6)
    assert metrics.condition_number(z) >= 1.0


@given(matrices())
def test_rank_and_deficiency_add_up(z):
    assert 0 <= metrics.rank_deficiency(z) <= min(z.shape)
    assert metrics.rank_deficiency(z) + metrics.numerical_rank(z) == min(z.shape)


@given(matrices(min_cols=2))
def test_spectral_summary_agrees_with_each_metric(z):
    summary = metrics.spectral_summary(z)
    assert summary["entropy"] == pytest.approx(metrics.matrix_entropy(z), abs=1e-12)
    assert summary["effective_rank"] == pytest.approx(metrics.effective_rank(z), rel=1e-12)
    assert summary["condition_number"] == pytest.approx(metrics.condition_number(z), rel=1e-12)
    assert summary["spectral_norm"] == pytest.approx(metrics.spectral_norm(z), rel=1e-12)
    assert summary["rank_deficiency"] == metrics.rank_deficiency(z)
    assert summary["sparsity"] == metrics.sparsity(z)


@given(matrices(), st.floats(1e-4, 1.0), st.floats(1e-4, 1.0))
def test_sparsity_is_a_share_that_grows_with_epsilon(z, a, b):
    low, high = sorted((a, b))
    assert 0.0 <= metrics.sparsity(z, low) <= metrics.sparsity(z, high) <= 1.0


# --- sample count: repeated rows and Bayesian-bootstrap weights ------------------------------
# Repeating every row k times multiplies each singular value by √k and changes nothing else, so
# a spectral metric that depends on the shape of the spectrum alone must not move. With N ≥ D
# that is every metric of §3.3; with N < D, min(N, D) grows with the repetitions, and the two
# metrics defined against it, rank deficiency (min(N, D) − rank) and normalised entropy (eqs.
# 2-3 over log min(N, D)), move by exactly that much.

repetitions = st.integers(2, 5)


@st.composite
def tall_matrices(draw, min_cols=2, max_cols=8, max_rows=12):
    """Matrices with N ≥ D."""
    cols = draw(st.integers(min_cols, max_cols))
    return draw(matrices(min_rows=cols, max_rows=max(cols, max_rows), min_cols=cols, max_cols=cols))


def repeated_rows(z, times):
    return z.repeat_interleave(times, dim=0)


def well_conditioned(z):
    """A condition number is only as accurate as (value × epsilon): leave the numerically singular out."""
    return metrics.condition_number(z) < 1e8


@given(matrices(), repetitions)
def test_repeating_rows_leaves_rank_effective_rank_condition_number_and_entropy_unchanged(z, times):
    assume(well_conditioned(z))
    repeated = repeated_rows(z, times)
    assert metrics.numerical_rank(repeated) == metrics.numerical_rank(z)
    assert metrics.effective_rank(repeated) == pytest.approx(metrics.effective_rank(z), rel=1e-9)
    assert metrics.condition_number(repeated) == pytest.approx(metrics.condition_number(z), rel=1e-6)
    unnormalised = metrics.matrix_entropy(z, normalize=False)
    assert metrics.matrix_entropy(repeated, normalize=False) == pytest.approx(unnormalised, rel=1e-9, abs=1e-9)


@given(tall_matrices(), repetitions)
def test_with_at_least_as_many_rows_as_features_every_spectral_metric_ignores_repetition(z, times):
    assume(well_conditioned(z))
    before, after = metrics.spectral_summary(z), metrics.spectral_summary(repeated_rows(z, times))
    assert after["rank_deficiency"] == before["rank_deficiency"]
    assert after["entropy"] == pytest.approx(before["entropy"], rel=1e-9, abs=1e-9)
    assert after["effective_rank"] == pytest.approx(before["effective_rank"], rel=1e-9)
    assert after["condition_number"] == pytest.approx(before["condition_number"], rel=1e-6)


@given(st.integers(2, 6), st.data(), repetitions)
def test_with_fewer_rows_than_features_deficiency_and_normalised_entropy_follow_min_n_d(rows, data, times):
    z = data.draw(matrices(min_rows=rows, max_rows=rows, min_cols=rows + 1, max_cols=20))
    assume(well_conditioned(z))
    n, d = z.shape
    repeated = repeated_rows(z, times)
    rank = metrics.numerical_rank(z)
    assert metrics.rank_deficiency(z) == n - rank
    assert metrics.rank_deficiency(repeated) == min(times * n, d) - rank
    rescaled = metrics.matrix_entropy(z) * math.log(n) / math.log(min(times * n, d))
    assert metrics.matrix_entropy(repeated) == pytest.approx(rescaled, rel=1e-9, abs=1e-9)


@st.composite
def exact_rank_matrices(draw):
    """P Q with small integer factors: exact in float64, so its rank is known without a tolerance."""
    rows, cols = draw(st.integers(2, 12)), draw(st.integers(1, 10))
    inner = draw(st.integers(1, min(rows, cols)))
    entries = st.integers(-3, 3).map(float)
    left = draw(arrays(np.float64, (rows, inner), elements=entries))
    right = draw(arrays(np.float64, (inner, cols), elements=entries))
    z = torch.from_numpy(left @ right)
    assume(z.abs().sum() > 0)
    return z


@given(exact_rank_matrices(), seeds)
def test_bayesian_bootstrap_weights_never_change_the_rank(z, seed):
    # every Dirichlet weight is positive, so diag(√(N·w)) z has the rank of z: unlike rows drawn
    # with replacement, a reweighting cannot lower it
    weights = torch.from_numpy(intervals.dirichlet_weights(z.shape[0], 8, np.random.default_rng(seed)))
    rank = metrics.numerical_rank(z)
    for share in weights:
        assert metrics.numerical_rank((share * z.shape[0]).sqrt()[:, None] * z) == rank
    spectra = metrics.weighted_spectra(z, weights, normalize=False)
    assert spectra["rank_deficiency"].tolist() == [float(metrics.rank_deficiency(z))] * len(weights)


@given(matrices(min_cols=2), seeds)
def test_weighted_spectra_keep_the_rank_of_the_unweighted_matrix(z, seed):
    weights = torch.from_numpy(intervals.dirichlet_weights(z.shape[0], 8, np.random.default_rng(seed)))
    spectra = metrics.weighted_spectra(z, weights)
    assert (spectra["rank_deficiency"] == metrics.rank_deficiency(z)).all()
    assert (spectra["effective_rank"] <= metrics.numerical_rank(z) + 1e-6).all()
    assert ((0 <= spectra["entropy"]) & (spectra["entropy"] <= 1 + 1e-9)).all()


@given(st.integers(6, 24), st.integers(3, 30), seeds)
def test_a_jackknife_replicate_of_the_spectra_is_the_spectra_of_the_rows_it_keeps(n, d, seed):
    # fewer samples than dimensions as well as more: a zero weight leaves its row out of rank, normalisation
    # (log min(n, D)) and condition number alike
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.normal(size=(n, d)) * np.linspace(1.0, 0.2, d))
    weights = intervals.jackknife_weights(n, 4, rng)
    spectra = metrics.weighted_spectra(z, torch.from_numpy(weights))
    for replicate, share in enumerate(weights):
        direct = metrics.spectral_summary(z[torch.from_numpy(share > 0)])
        for name in ("entropy", "effective_rank", "rank_deficiency", "condition_number", "spectral_norm"):
            assert float(spectra[name][replicate]) == pytest.approx(direct[name], rel=1e-6, abs=1e-9), name


@given(st.integers(2, 60), st.integers(2, 30), st.integers(0, 60), seeds)
def test_jackknife_groups_partition_the_samples_and_their_leading_ones_evenly(count, groups, leading, seed):
    membership = intervals.jackknife_groups(count, groups, np.random.default_rng(seed), leading=leading)
    size = min(groups, count)
    sizes = np.bincount(membership, minlength=size)
    assert len(sizes) == size and np.ptp(sizes) <= 1  # every sample in one group, sizes within one
    assert np.ptp(np.bincount(membership[: min(leading, count)], minlength=size)) <= 1
    weights = intervals.weights_of(membership, size)
    assert ((weights == 0).sum(axis=0) == 1).all()  # every sample is left out exactly once
    assert np.allclose(weights.sum(axis=1), 1.0)


# --- curvature (eq. 5) -----------------------------------------------------------------------


@given(st.integers(3, 20), st.integers(1, 8), seeds, st.lists(st.floats(0.1, 5.0), min_size=19, max_size=19))
def test_curvature_of_a_straight_path_is_zero(tokens, width, seed, step_lengths):
    generator = torch.Generator().manual_seed(seed)
    start, direction = torch.randn(2, width, generator=generator, dtype=torch.float64)
    assume(direction.norm() > 1e-3)
    positions = torch.tensor(step_lengths[: tokens - 1], dtype=torch.float64).cumsum(0)
    path = torch.cat([start[None], start + positions[:, None] * direction])
    assert metrics.curvature(path) == pytest.approx(0.0, abs=1e-7)


@given(matrices(min_rows=3, max_rows=20))
def test_curvature_lies_in_unit_interval(h):
    steps = h[1:] - h[:-1]
    assume(((steps[:-1].norm(dim=1) > 0) & (steps[1:].norm(dim=1) > 0)).any())
    assert 0.0 <= metrics.curvature(h) <= 1.0


@given(st.integers(3, 20), st.integers(1, 8))
def test_curvature_of_a_path_that_reverses_at_every_step_is_one(tokens, width):
    path = torch.zeros(tokens, width, dtype=torch.float64)
    path[1::2, 0] = 1.0
    assert metrics.curvature(path) == pytest.approx(1.0, abs=1e-9)


@given(matrices(min_rows=3, max_rows=20), seeds, st.floats(1e-3, 1e3))
def test_curvature_is_invariant_to_rigid_motion_and_scaling(h, seed, scale):
    steps = h[1:] - h[:-1]
    assume((steps.norm(dim=1) > 1e-3).all())
    moved = scale * h @ orthogonal(h.shape[1], seed) + 3.0
    assert metrics.curvature(moved) == pytest.approx(metrics.curvature(h), abs=1e-7)


# --- cosine (eq. 7) and mean shift ----------------------------------------------------------


@given(matrices())
def test_cosine_of_a_matrix_with_itself_is_one(x):
    assume((x.norm(dim=1) > 1e-3).all())
    assert metrics.cosine_similarity(x, x) == pytest.approx(1.0, **TOL)


@given(matrices(), st.data())
def test_cosine_is_symmetric_bounded_and_blind_to_positive_row_scaling(x, data):
    y = data.draw(matrices(min_rows=x.shape[0], max_rows=x.shape[0], min_cols=x.shape[1], max_cols=x.shape[1]))
    assume((x.norm(dim=1) > 1e-3).all() and (y.norm(dim=1) > 1e-3).all())
    value = metrics.cosine_similarity(x, y)
    scales = torch.linspace(0.5, 4.0, x.shape[0], dtype=torch.float64)[:, None]
    assert -1.0 <= value <= 1.0
    assert metrics.cosine_similarity(y, x) == pytest.approx(value, **TOL)
    assert metrics.cosine_similarity(scales * x, y) == pytest.approx(value, **TOL)


@given(matrices(), st.lists(st.floats(-5, 5), min_size=10, max_size=10))
def test_mean_shift_of_a_translation_is_its_length(x, offset):
    b = torch.tensor(offset[: x.shape[1]], dtype=torch.float64)
    assert metrics.mean_shift(x, x) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mean_shift(x, x + b) == pytest.approx(float(b.norm()), rel=1e-9, abs=1e-9)
    assert metrics.mean_shift(x + b, x) == pytest.approx(metrics.mean_shift(x, x + b), rel=1e-12)


# --- weight change (eq. 1) ---------------------------------------------------------------------


def _checkpoint(directory: Path, tensors: dict) -> Path:
    directory.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, directory / "model.safetensors")
    return directory


@given(st.integers(1, 4), st.integers(1, 6), seeds, st.floats(1e-3, 1e2))
def test_weight_change_is_zero_for_identical_checkpoints_and_scales_with_the_perturbation(layers, width, seed, scale):
    generator = torch.Generator().manual_seed(seed)
    names = [f"model.layers.{i}.self_attn.{m}.weight" for i in range(layers) for m in layouts.ATTENTION_MODULES]
    base = {n: torch.randn(width, width, generator=generator) for n in names}
    noise = {n: torch.randn(width, width, generator=generator) for n in names}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        base_dir = _checkpoint(root / "base", base)
        same_dir = _checkpoint(root / "same", base)
        unit_dir = _checkpoint(root / "unit", {n: base[n] + noise[n] for n in names})
        scaled_dir = _checkpoint(root / "scaled", {n: base[n] + scale * noise[n] for n in names})
        identical = weights.weight_change(base_dir, same_dir)
        unit = weights.weight_change(base_dir, unit_dir)
        scaled = weights.weight_change(base_dir, scaled_dir)
    assert sorted(identical) == list(range(1, layers + 1))
    assert all(value == 0.0 for value in identical.values())
    for layer in unit:
        expected = math.sqrt(
            sum(float((noise[n].double() ** 2).sum()) for n in names if n.startswith(f"model.layers.{layer - 1}."))
        )
        assert unit[layer] == pytest.approx(expected, rel=1e-5)
        assert scaled[layer] == pytest.approx(scale * unit[layer], rel=1e-3)
