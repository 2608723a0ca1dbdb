"""Speed and memory of the profile engine on the tiny default pair (pytest-benchmark).

Figures land in the benchmark table and its extra_info; no test here asserts a time.
What is asserted is the design rule: exactly one forward pass per model per sample.
The profile's cost against the bare forward, at the paper's sizes, is in test_profile_overhead.py.
"""

import json
import os
import subprocess
import sys

import pytest

from harness import config
from harness.measure import profile

SAMPLES = 200
OPTIONS = profile.ProfileOptions(pooled_samples=SAMPLES, token_samples=100, max_tokens=256, batch_size=8)


def test_pair_tables_from_cached_runs(benchmark, tiny_olmo2, monkeypatch, tmp_path):
    resolved, _ = tiny_olmo2
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    first = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    assert first.meta["forward"]["base"]["samples"] == SAMPLES == first.meta["forward"]["sft"]["samples"]
    result = benchmark.pedantic(
        profile.profile_pair,
        args=(resolved, OPTIONS),
        kwargs={"device": "cpu", "progress": False},
        rounds=3,
        warmup_rounds=0,
    )
    assert result.meta["forward"]["base"]["samples"] == 0


def test_interval_replicates_of_every_claim(benchmark, tiny_olmo2, monkeypatch, tmp_path):
    """The jackknife replicates (50 groups, the default) and debiased estimates of the pair and spectral
    statistics, every layer."""
    from harness.verdicts import bootstrap

    resolved, _ = tiny_olmo2
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    pair = profile.profile_pair(resolved, OPTIONS, device="cpu", progress=False)
    groups = config.thresholds_for("tiny_olmo2")["bootstrap"]["jackknife_groups"]

    def replicate():
        bootstrap._RUN_SPECTRA.clear()  # measure the computation, not the memo of a run's spectra
        for stored in tmp_path.rglob("resampled-spectra-*.npz"):  # nor the copy kept beside the run
            stored.unlink()
        return bootstrap.Resampler(pair, groups=groups, seed=0).bundles("spectral")

    bundles = benchmark.pedantic(replicate, rounds=2, warmup_rounds=0)
    assert len(bundles) == min(groups, OPTIONS.token_samples or groups)
    benchmark.extra_info.update(samples=SAMPLES, groups=len(bundles), layers=len(pair.pair))


PEAK_SCRIPT = """
import json, os, resource, sys, tempfile
os.environ["HARNESS_CACHE"] = tempfile.mkdtemp()  # a cache miss: the profile really runs
from harness.measure import capture, profile
from harness.sources import models
sys.path.insert(0, {bench_dir!r})
from conftest import long_probe
base_dir, tokens, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ref = models.ModelRef(base_dir)
probe = long_probe(64)
if mode == "profile":
    options = profile.ProfileOptions(pooled_samples=64, token_samples=32, max_tokens=tokens, batch_size=8)
    profile.capture_model(ref, probe, options, "base", device="cpu", progress=False)
else:
    model, tokenizer = models.load_model(ref, device="cpu"), models.load_tokenizer(ref)
    encoded = capture.encode(tokenizer, probe.texts, tokens)
    for batch in capture.batches(encoded, list(range(64)), 8, tokenizer.pad_token_id):
        capture.forward_only(model, batch)
print(json.dumps({{"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


@pytest.mark.parametrize("tokens", [128, 256, 512])
def test_peak_memory_as_the_sequence_length_doubles(benchmark, tiny_olmo2, tokens):
    """Peak resident memory of a fresh process: bare forward passes against a full profile capture."""
    resolved, _ = tiny_olmo2
    script = PEAK_SCRIPT.format(bench_dir=os.path.dirname(__file__))

    def measure_both():
        # each mode in its own fresh process (peak RSS is per process), both at once: one per core
        running = {
            mode: subprocess.Popen(
                [sys.executable, "-c", script, resolved.base.location, str(tokens), mode],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            for mode in ("forward", "profile")
        }
        peaks = {}
        for mode, process in running.items():
            out, err = process.communicate()
            assert process.returncode == 0, f"{mode} run failed:\n{err[-2000:]}"
            peaks[mode] = json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]
        return peaks

    peaks = benchmark.pedantic(measure_both, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(
        tokens=tokens,
        peak_rss_mib_bare_forward=round(peaks["forward"], 1),
        peak_rss_mib_profile=round(peaks["profile"], 1),
    )
