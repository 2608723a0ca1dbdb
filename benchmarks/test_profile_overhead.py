"""What profiling costs over the bare forward pass it rides on, at §4.1's sizes.

On the tiny default pair by default; ``HARNESS_BENCH_SHAPE=olmo2_7b`` (any shipped shape or a config.json)
measures a random model of that shape in bfloat16 on the GPU when there is one (the GPU check,
``scripts/gpu_check.py``, runs it so), and ``HARNESS_BENCH_SAMPLES`` sets the pooled samples.
"""

import dataclasses
import os
import tempfile

import pytest

from harness.measure import capture, profile
from harness.sources import models
from harness.sources.data import load_probe_set


@pytest.fixture(scope="module")
def measured_model(request):
    """(checkpoint, dtype, device) of the model to profile."""
    shape = os.environ.get("HARNESS_BENCH_SHAPE")
    if not shape:
        resolved, _ = request.getfixturevalue("tiny_olmo2")
        return resolved.base, "float32", "cpu"
    from harness import dry_run

    name, config = dry_run.load_shape(shape)
    base_dir, _ = dry_run.build_shape_pair(name, config, "bfloat16", progress=False)
    return models.ModelRef(str(base_dir)), "bfloat16", models.default_device()


def test_profile_overhead_over_the_bare_forward_at_the_papers_defaults(
    benchmark, measured_model, monkeypatch, tmp_path
):
    """Capture of one model at §4.1's sizes (1,000 pooled, 100 token-level samples) against the bare decoder
    forward over the same texts, each including what both must do (load the model, encode the texts); rounds
    interleaved so both see the same machine. The ratio and where the difference goes are in extra_info."""
    import time

    base, dtype, device = measured_model
    options = profile.ProfileOptions(dtype=dtype)
    if os.environ.get("HARNESS_BENCH_SAMPLES"):
        samples = int(os.environ["HARNESS_BENCH_SAMPLES"])
        options = dataclasses.replace(
            options, pooled_samples=samples, token_samples=min(options.token_samples, samples)
        )
    probe = load_probe_set(options.probe_set, options.pooled_samples)

    def bare():
        model, tokenizer = models.load_model(base, dtype=dtype, device=device), models.load_tokenizer(base)
        encoded = capture.encode(tokenizer, probe.texts, options.max_tokens)
        for batch in capture.batches(encoded, list(range(len(encoded))), options.batch_size, tokenizer.pad_token_id):
            capture.forward_only(model, batch)

    runs = []

    def profiled(opts=options):
        monkeypatch.setenv("HARNESS_CACHE", tempfile.mkdtemp(dir=tmp_path))  # a cache miss every round
        runs.append(profile.capture_model(base, probe, opts, "base", device=device, progress=False))

    def timed(function) -> float:
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    def interleaved():
        seconds = {"bare": [], "pooled only": [], "profile": []}
        for _ in range(2):
            seconds["bare"].append(timed(bare))
            seconds["pooled only"].append(timed(lambda: profiled(dataclasses.replace(options, token_samples=0))))
            seconds["profile"].append(timed(profiled))
        return seconds

    bare()  # warm-up: the first load of the model's files
    seconds = benchmark.pedantic(interleaved, rounds=1, warmup_rounds=0)
    assert runs[-1].forward_samples == options.pooled_samples  # one forward pass per sample, as the bare run
    best = {name: min(values) for name, values in seconds.items()}
    benchmark.extra_info.update(
        model=base.location,
        dtype=dtype,
        device=device,
        samples=options.pooled_samples,
        token_samples=options.token_samples,
        bare_seconds=round(best["bare"], 3),
        profile_seconds=round(best["profile"], 3),
        ratio=round(best["profile"] / best["bare"], 3),
        pooled_metrics_share=round((best["pooled only"] - best["bare"]) / best["bare"], 3),
        token_level_share=round((best["profile"] - best["pooled only"]) / best["bare"], 3),
    )
