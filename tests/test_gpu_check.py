"""The GPU check script, rehearsed on the CPU at a small shape: every step runs and its figures are written."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_rehearsed_at_a_small_shape_writes_every_figure(tmp_path):
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "run",
            "--shape",
            "tests/data/family_shapes/llama.json",
            "--samples",
            "8",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "gpu"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu" / "figures.json").read_text())
    assert set(figures["dry_run"]["stages"]) == {"build", "profile", "weight change", "swap", "lm-eval", "LoRA"}
    assert figures["dry_run"]["estimate_seconds"]["total"] > 0
    overhead = figures["profile_overhead"]["extra_info"]
    assert overhead["dtype"] == "bfloat16" and overhead["samples"] == 8 and overhead["ratio"] > 0
    assert figures["device"]["torch"]


def test_the_gpu_check_names_what_is_missing_and_how_to_bring_it(tmp_path, monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(script, "NEEDED_MODULES", ("numpy", "a_module_nobody_has"))
    assert script.main(["run", "--out", str(tmp_path)]) == 2
    assert "missing here: a_module_nobody_has" in capsys.readouterr().err


def test_the_wheels_to_carry_are_the_locks_pins_the_gpu_machine_lacks():
    lock = "numpy==2.1.0\n    # via pandas\nlm-eval==0.4.9\ntorch==2.13.0\nnvidia-cublas==13.0\nPyYAML==6.0.2\n"
    present = "numpy==1.26.4\npyyaml==6.0.1\ntorch==2.11.0+cu130\n"
    assert _script().wheels_to_carry(lock, present) == ["lm-eval==0.4.9"]
    assert _script().wheels_to_carry(lock) == ["numpy==2.1.0", "lm-eval==0.4.9", "PyYAML==6.0.2"]
