"""Fixtures for the harness's own unit tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.sources import models, zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def show(request):
    """Print a measured table to the terminal even while pytest captures output: the calibration and coverage
    tables are part of what ``make test`` reports."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def show(text: str) -> None:
        with capture.global_and_fixture_disabled():
            print(text, flush=True)

    return show


@pytest.fixture(scope="session", params=models.TINY_PAIRS)
def tiny_pair(request) -> zoo.BuiltPair:
    """Each tiny pair, built once into the harness cache (minutes on first use, then instant)."""
    return zoo.build_pair(request.param, progress=False)


MICRO = dict(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=2,
    max_positions=256,
    pretrain_steps=3,
    pretrain_batch=2,
    pretrain_length=32,
    sft_steps=3,
    sft_batch=2,
    sft_examples=20,
    eval_examples=4,
)


@pytest.fixture
def micro_recipe() -> zoo.TinyRecipe:
    """A recipe small enough to build in a few seconds, for testing the build machinery."""
    return zoo.TinyRecipe(family="olmo2", **MICRO)


@pytest.fixture(scope="session", params=["olmo2", "mistral"])
def micro_pair(request, tmp_path_factory) -> zoo.BuiltPair:
    """A real but barely trained pair of each family (3 layers), built in a second into a temporary folder."""
    recipe = zoo.TinyRecipe(family=request.param, **{**MICRO, "num_layers": 3})
    return zoo.build_pair(f"micro_{request.param}", recipe, root=tmp_path_factory.mktemp("zoo"), progress=False)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh, empty harness cache for one test."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def verify_small(isolated_cache, tmp_path, monkeypatch):
    """``harness verify`` of a custom pair at small sizes (40 pooled samples, 6 swap items, no LoRA), lm-eval
    stubbed to score 0: returns the pair's report section. For the tests of what a pair's shape changes."""
    from harness import cli
    from harness.measure import evaluate
    from harness.output import reports

    monkeypatch.setattr(
        evaluate,
        "lm_eval_scores",
        lambda model, tokenizer, tasks, options: {
            task: {"score": 0.0, "stderr": 0.0, "metric": "exact_match"} for task in tasks
        },
    )

    def verify(base, sft) -> dict:
        argv = ["verify", "--base", str(base), "--sft", str(sft), "--no-tune", "--pooled-samples", "40"]
        argv += ["--token-samples", "8", "--tasks", "gsm8k_local", "--limit", "3", "--set", "C3.items=6"]
        assert cli.main([*argv, "--report-dir", str(tmp_path / "reports")]) == 0
        return reports.load_report(tmp_path / "reports" / "custom")["pairs"]["custom"]

    return verify


@dataclass(frozen=True)
class SuitesRun:
    """What a ``pytest suites ...`` run returned and printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_suites(capsys, monkeypatch, tmp_path_factory):
    """``pytest ARGS`` as a user runs it from the repository root, in this process: a second interpreter would
    import torch and the stack again, seconds a run. Not pytester's in-process run, which drops the modules the
    inner run imported: torch registers some of them with its C++ library, once per process, and refuses them
    when imported again. What must start fresh (the Hugging Face cache folders, which the hub library reads once,
    at import) runs in its own process instead."""

    def run(*args: str, env: dict[str, str] | None = None) -> SuitesRun:
        monkeypatch.chdir(ROOT)
        monkeypatch.setattr(sys, "path", list(sys.path))  # the inner run's rootdir insertions are undone after
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()  # what the test printed before is not this run's
        basetemp = tmp_path_factory.mktemp("inner-run")
        returncode = pytest.main([*args, "-p", "no:cacheprovider", f"--basetemp={basetemp}"])
        out, err = capsys.readouterr()
        return SuitesRun(int(returncode), out, err)

    return run
