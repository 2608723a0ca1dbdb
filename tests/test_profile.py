"""The profile engine: one forward pass per sample, resumable, and right on known pairs."""

import json
import math

import pytest
import torch

from harness import cli
from harness.measure import profile
from harness.output import reports
from harness.sources import models

OPTIONS = profile.ProfileOptions(pooled_samples=24, token_samples=10, max_tokens=48, batch_size=5, chunk_size=10)


def _resolved(built, sft_dir=None):
    return models.resolve_pair(models.custom_pair(str(built.base_dir), str(sft_dir or built.sft_dir), "micro"))


def test_profile_has_every_metric_for_layers_0_to_L(micro_pair, isolated_cache):
    result = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    layers = list(range(micro_pair.info["recipe"]["num_layers"] + 1))
    for table in (result.base, result.sft, result.pair):
        assert table.index.tolist() == layers
    for column in (*profile.DATASET_METRICS, *profile.SAMPLE_METRICS, "probe_accuracy"):
        assert result.base[column].notna().all() and result.sft[column].notna().all(), column
    for column in ("cka", "cosine", "mean_shift", "delta_prompt_entropy", "delta_dataset_entropy"):
        assert result.pair[column].notna().all(), column
    assert math.isnan(result.pair.loc[0, "weight_change"])  # the embedding output has no Q/K/V/O
    assert result.pair.loc[1:, "weight_change"].gt(0).all()


def test_a_bfloat16_profile_agrees_with_float32(micro_pair, isolated_cache):
    import dataclasses

    full = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    half = profile.profile_pair(
        _resolved(micro_pair), dataclasses.replace(OPTIONS, dtype="bfloat16"), device="cpu", progress=False
    )
    assert half.meta["forward"]["base"]["samples"] == OPTIONS.pooled_samples  # another cache key
    assert half.pair["cka"].notna().all() and half.base["probe_accuracy"].notna().all()
    assert (half.pair["cka"] - full.pair["cka"]).abs().max() < 0.05


def test_exactly_one_forward_pass_per_model_per_sample(micro_pair, isolated_cache):
    result = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    for label in ("base", "sft"):
        assert result.meta["forward"][label]["samples"] == OPTIONS.pooled_samples
        assert result.meta["forward"][label]["calls"] == math.ceil(10 / 5) * 2 + math.ceil(4 / 5)


def test_finished_profile_is_a_cache_hit_that_loads_no_model(micro_pair, isolated_cache, monkeypatch):
    first = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded for a cached profile")

    monkeypatch.setattr(models, "load_model", refuse)
    again = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    assert again.meta["forward"]["base"]["samples"] == 0
    assert again.pair.equals(first.pair) and again.base.equals(first.base)


def test_batch_size_does_not_change_the_numbers(micro_pair, isolated_cache):
    a = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    import dataclasses

    b = profile.profile_pair(
        _resolved(micro_pair), dataclasses.replace(OPTIONS, batch_size=1), device="cpu", progress=False
    )
    assert b.meta["forward"]["base"]["samples"] == 0  # same cache key: batch size is not part of the result
    import shutil

    shutil.rmtree(isolated_cache)
    c = profile.profile_pair(
        _resolved(micro_pair), dataclasses.replace(OPTIONS, batch_size=1), device="cpu", progress=False
    )
    assert (c.pair - a.pair).abs().max().max() < 1e-4


def test_killed_run_resumes_at_the_missing_chunk(micro_pair, isolated_cache, monkeypatch):
    from harness import cache

    real_write = cache.write_bytes_atomic
    written = []

    def dies_on_second_chunk(path, data):
        if len(written) == 1:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, data)

    monkeypatch.setattr(cache, "write_bytes_atomic", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    monkeypatch.setattr(cache, "write_bytes_atomic", real_write)
    assert not list(isolated_cache.rglob("*.tmp"))  # no partial file
    resumed = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    assert resumed.meta["forward"]["base"]["samples"] == OPTIONS.pooled_samples - OPTIONS.chunk_size
    fresh_cache = isolated_cache.parent / "fresh"
    monkeypatch.setenv("HARNESS_CACHE", str(fresh_cache))
    uninterrupted = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)
    assert resumed.pair.equals(uninterrupted.pair)


def test_identical_models_are_identical_at_every_layer(micro_pair, isolated_cache):
    result = profile.profile_pair(
        _resolved(micro_pair, sft_dir=micro_pair.base_dir), OPTIONS, device="cpu", progress=False
    )
    assert result.pair["cka"].tolist() == pytest.approx([1.0] * len(result.pair))
    assert result.pair["cosine"].tolist() == pytest.approx([1.0] * len(result.pair))
    assert result.pair["mean_shift"].abs().max() == 0.0
    assert result.pair.loc[1:, "weight_change"].abs().max() == 0.0


@pytest.mark.parametrize(
    "load_check, error", [(True, "non-finite .*layers.1.self_attn.o_proj.weight"), (False, "layer 2 produced NaN")]
)
def test_nan_weights_and_nan_activations_are_refused_and_leave_no_chunk(
    micro_pair, isolated_cache, tmp_path, monkeypatch, load_check, error
):
    """NaN weights are refused when the model loads; without that check, the capture refuses NaN activations."""
    broken = tmp_path / "broken"
    model = models.load_model(models.ModelRef(str(micro_pair.sft_dir)), device="cpu")
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    models.load_tokenizer(models.ModelRef(str(micro_pair.sft_dir))).save_pretrained(broken)
    if not load_check:
        monkeypatch.setattr(models, "check_finite_weights", lambda model, name: None)
    with pytest.raises((profile.ActivationError, models.UnsupportedModelError), match=error):
        profile.profile_pair(_resolved(micro_pair, sft_dir=broken), OPTIONS, device="cpu", progress=False)
    base_chunks = math.ceil(OPTIONS.pooled_samples / OPTIONS.chunk_size)
    assert len(list(isolated_cache.rglob("chunk-*"))) == base_chunks  # the base's; none of the SFT's
    assert not list(isolated_cache.rglob("*.tmp"))


@pytest.mark.parametrize(
    "bad",
    [
        dict(pooled_samples=1),
        dict(token_samples=50, pooled_samples=10),
        dict(max_tokens=2),
        dict(last_layer="post"),
        dict(batch_size=0),
    ],
)
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        profile.ProfileOptions(**bad)


def test_cli_writes_a_report_pandas_can_read(micro_pair, isolated_cache, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = cli.main(
        [
            "profile",
            "--base",
            str(micro_pair.base_dir),
            "--sft",
            str(micro_pair.sft_dir),
            "--dtype",
            "float32",
            "--device",
            "cpu",
            "--pooled-samples",
            "12",
            "--token-samples",
            "4",
            "--max-tokens",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and "report:" in capsys.readouterr().out
    report = reports.load_report(out)
    for name in ("base", "sft", "pair"):
        assert reports.table(report, name).index.tolist() == list(range(4))
    assert report["probe"]["digest"] and report["options"]["alpha"] == 1.0
    assert report["environment"]["packages"]["torch"] and report["timings"]["total_seconds"] > 0
    assert report["forward"]["base"]["samples"] == 12
    assert json.loads(out.read_text())["schema_version"] == reports.SCHEMA_VERSION
    assert not list(tmp_path.glob(".report.json.*"))


def test_corrupt_or_foreign_report_is_a_clear_error(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(reports.ReportError, match="not valid JSON"):
        reports.load_report(path)
    path.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(reports.ReportError, match="schema version 999"):
        reports.load_report(path)
    with pytest.raises(reports.ReportError, match="no report"):
        reports.load_report(tmp_path / "missing.json")


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("side", ["base", "sft"])
def test_a_changed_config_or_tokenizer_of_either_model_is_a_cache_miss(micro_pair, isolated_cache, tmp_path, side):
    import shutil

    folders = {name: shutil.copytree(getattr(micro_pair, f"{name}_dir"), tmp_path / name) for name in ("base", "sft")}
    resolved = models.resolve_pair(models.custom_pair(str(folders["base"]), str(folders["sft"]), "micro"))
    first = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    again = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    assert again.meta["forward"][side]["samples"] == 0  # unchanged files: read back from the cache

    config = folders[side] / "config.json"
    _edit_json(config, rms_norm_eps=0.5)  # a number the forward pass uses, weights untouched
    changed = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    assert changed.meta["forward"][side]["samples"] == OPTIONS.pooled_samples
    other = "sft" if side == "base" else "base"
    assert changed.meta["forward"][other]["samples"] == 0
    assert not changed.pair["cka"].equals(first.pair["cka"])

    tokenizer_config = folders[side] / "tokenizer_config.json"
    _edit_json(tokenizer_config, model_max_length=32)  # any tokenizer file may change the token ids
    retokenized = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    assert retokenized.meta["forward"][side]["samples"] == OPTIONS.pooled_samples


def test_resampled_spectra_are_kept_beside_the_run_and_read_back_to_the_last_bit(
    micro_pair, isolated_cache, monkeypatch
):
    import numpy as np

    from harness import metrics
    from harness.verdicts import bootstrap

    result = profile.profile_pair(_resolved(micro_pair), OPTIONS, device="cpu", progress=False)

    def spectral(model: str) -> dict:
        bootstrap._RUN_SPECTRA.clear()  # as in another process: only the disk is shared
        return bootstrap.Resampler(result, groups=20, seed=3)._model_spectra(getattr(result, f"{model}_run"))

    computed = spectral("base")
    (stored,) = result.base_run.directory.glob("resampled-spectra-*.npz")
    monkeypatch.setattr(metrics, "weighted_spectra", lambda *args, **kwargs: pytest.fail("resampled again"))
    read_back = spectral("base")
    assert set(read_back) == set(bootstrap.SPECTRAL)
    assert all(np.array_equal(read_back[name], computed[name], equal_nan=True) for name in bootstrap.SPECTRAL)
    stored.write_bytes(b"not an npz file")  # a damaged file is computed again, not trusted
    monkeypatch.undo()
    again = spectral("base")
    assert all(np.array_equal(again[name], computed[name], equal_nan=True) for name in bootstrap.SPECTRAL)
    with pytest.raises(pytest.fail.Exception, match="resampled again"):  # another seed is another resampling
        monkeypatch.setattr(metrics, "weighted_spectra", lambda *args, **kwargs: pytest.fail("resampled again"))
        bootstrap._RUN_SPECTRA.clear()
        bootstrap.Resampler(result, groups=20, seed=4)._model_spectra(result.base_run)
