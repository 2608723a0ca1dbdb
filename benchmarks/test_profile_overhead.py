"""What profiling costs over the bare forward pass it rides on, at §4.1's sizes."""

import dataclasses
import tempfile

from harness.measure import capture, profile
from harness.sources import models
from harness.sources.data import load_probe_set


def test_profile_overhead_over_the_bare_forward_at_the_papers_defaults(benchmark, tiny_olmo2, monkeypatch,
                                                                       tmp_path):
    """Capture of one model at §4.1's sizes (1,000 pooled, 100 token-level samples) against the bare decoder
    forward over the same texts, each including what both must do (load the model, encode the texts); rounds
    interleaved so both see the same machine. The ratio and where the difference goes are in extra_info."""
    import time

    resolved, _ = tiny_olmo2
    options = profile.ProfileOptions()
    probe = load_probe_set(options.probe_set, options.pooled_samples)

    def bare():
        model, tokenizer = models.load_model(resolved.base, device="cpu"), models.load_tokenizer(resolved.base)
        encoded = capture.encode(tokenizer, probe.texts, options.max_tokens)
        for batch in capture.batches(encoded, list(range(len(encoded))), options.batch_size,
                                     tokenizer.pad_token_id):
            capture.forward_only(model, batch)

    runs = []

    def profiled(opts=options):
        monkeypatch.setenv("HARNESS_CACHE", tempfile.mkdtemp(dir=tmp_path))  # a cache miss every round
        runs.append(profile.capture_model(resolved.base, probe, opts, "base", device="cpu", progress=False))

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
        samples=options.pooled_samples, token_samples=options.token_samples,
        bare_seconds=round(best["bare"], 3), profile_seconds=round(best["profile"], 3),
        ratio=round(best["profile"] / best["bare"], 3),
        pooled_metrics_share=round((best["pooled only"] - best["bare"]) / best["bare"], 3),
        token_level_share=round((best["profile"] - best["pooled only"]) / best["bare"], 3))
