#!/usr/bin/env python3
"""The GPU check: on a machine with a GPU and no internet, the figures of a real pair's shape in one command.

    python3 scripts/gpu_check.py run --wheels .whl --pair olmo2_7b --out reports/gpu

1. installs, from carried wheels, what the machine lacks of the harness's needs (nothing is fetched);
2. runs ``harness dry-run`` at the pair's shape in bfloat16 (every stage: build, profile, weight change,
   swap, lm-eval, LoRA; time and host and GPU memory of each, and the estimate of a full run);
3. runs the profile-overhead benchmark at the same shape (profile against the bare forward pass);
4. writes ``figures.json`` (and the two raw reports) under ``--out``, each step under a time limit, so the
   whole check ends well inside ten minutes.

On a machine with network access, ``fetch`` downloads the wheels to carry (Python 3.12, x86-64 Linux by
default): the exact versions of ``constraints/lock.txt``, less the packages the GPU machine already has
(``--present``: its ``pip freeze``). Rehearse the check on a CPU at a small shape:

    python3 scripts/gpu_check.py run --shape tests/data/family_shapes/llama.json --samples 16 --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what the dry run and the benchmark import, beyond PyTorch, transformers, peft and accelerate
NEEDED_MODULES = (
    "numpy",
    "pandas",
    "scipy",
    "tqdm",
    "yaml",
    "safetensors",
    "tokenizers",
    "matplotlib",
    "datasets",
    "lm_eval",
    "pytest",
    "pytest_benchmark",
    "submitit",
)
NEVER_CARRIED = ("torch", "triton", "nvidia-", "cuda-")  # the machine's own CUDA build stays


def missing_modules(env: dict) -> list[str]:
    probe = (
        "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe, *NEEDED_MODULES], capture_output=True, text=True, env=env, check=True
    )
    return found.stdout.split()


def install_wheels(wheels: Path, site: Path) -> None:
    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"{wheels} holds no wheels; make them with `python3 scripts/gpu_check.py fetch`")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(site),
            *map(str, files),
        ],
        check=True,
    )


def _timed(command: list[str], env: dict, limit: float, log: Path) -> dict:
    started = time.perf_counter()
    with open(log, "w") as out:
        try:
            code = subprocess.run(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=limit
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    return {
        "command": " ".join(command),
        "exit": code,
        "seconds": round(time.perf_counter() - started, 1),
        "log": str(log),
    }


def device_facts(env: dict) -> dict:
    script = (
        "import json, torch, transformers, peft; c = torch.cuda.is_available(); print(json.dumps({"
        "'torch': torch.__version__, 'transformers': transformers.__version__, 'peft': peft.__version__, "
        "'gpu': torch.cuda.get_device_name(0) if c else None, 'gpu_memory_gib': round(torch.cuda."
        "get_device_properties(0).total_memory / 2**30, 1) if c else None}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-500:]}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if args.wheels and missing_modules(env):
        site = Path(args.site)
        install_wheels(Path(args.wheels), site)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    missing = missing_modules(env)
    if missing:
        print(
            f"missing here: {', '.join(missing)}. Carry their wheels (`python3 scripts/gpu_check.py fetch` on a "
            "machine with network access) and name the folder with --wheels.",
            file=sys.stderr,
        )
        return 2
    target = ["--shape", args.shape] if args.shape else ["--pair", args.pair]
    figures = {"device": device_facts(env), "target": args.shape or args.pair, "dtype": "bfloat16"}
    dry_run = out / "dry-run.json"
    figures["dry_run"] = _timed(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "dry-run",
            *target,
            "--dtype",
            "bfloat16",
            "--device",
            args.device,
            "--out",
            str(dry_run),
        ],
        env,
        args.dry_run_limit,
        out / "dry-run.log",
    )
    if dry_run.is_file():
        report = json.loads(dry_run.read_text())
        figures["dry_run"]["stages"] = {
            stage["name"]: {
                key: stage[key] for key in ("seconds", "peak_host_mib", "host_above_start_mib", "peak_gpu_mib")
            }
            for stage in report["stages"]
        }
        figures["dry_run"]["estimate_seconds"] = report.get("estimate_seconds")
    benchmark = out / "profile-overhead.json"
    bench_env = {**env, "HARNESS_BENCH_SHAPE": args.shape or args.pair, "HARNESS_BENCH_SAMPLES": str(args.samples)}
    figures["profile_overhead"] = _timed(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "benchmarks/test_profile_overhead.py",
            "--benchmark-json",
            str(benchmark),
        ],
        bench_env,
        args.benchmark_limit,
        out / "profile-overhead.log",
    )
    if benchmark.is_file():
        figures["profile_overhead"]["extra_info"] = json.loads(benchmark.read_text())["benchmarks"][0]["extra_info"]
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0 if figures["dry_run"]["exit"] == 0 and figures["profile_overhead"]["exit"] == 0 else 1


def _name(requirement: str) -> str:
    return requirement.split("==")[0].strip().lower().replace("_", "-")


def wheels_to_carry(lock: str, present: str = "") -> list[str]:
    """The exact pins of the lock (``name==version``) to carry: those the GPU machine's ``pip freeze``
    (``present``) lacks, never its own CUDA build of torch and its libraries."""
    have = {_name(line) for line in present.splitlines() if "==" in line}
    pins = [line.split(" ")[0] for line in lock.splitlines() if "==" in line and not line.startswith("#")]
    return [pin for pin in pins if _name(pin) not in have and not _name(pin).startswith(NEVER_CARRIED)]


def fetch(args: argparse.Namespace) -> int:
    present = Path(args.present).read_text() if args.present else ""
    wanted = wheels_to_carry((ROOT / "constraints" / "lock.txt").read_text(), present)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [
        f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
    ]
    for pin in wanted:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"--python-version={args.python}",
                "--implementation=cp",
                *platforms,
                "-d",
                str(dest),
                pin,
            ],
            check=True,
        )
    size = sum(path.stat().st_size for path in dest.glob("*.whl")) / 2**20
    print(f"{len(wanted)} wheels in {dest} ({size:.0f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("run", help="the check itself")
    check.add_argument("--pair", default="olmo2_7b", help="a registered pair, whose shape ships with the harness")
    check.add_argument("--shape", help="a config.json of another architecture instead")
    check.add_argument("--wheels", help="folder of carried wheels, installed if something is missing")
    check.add_argument("--site", default="/tmp/harness-site", help="where carried wheels are installed")
    check.add_argument("--device", default="auto")
    check.add_argument("--samples", type=int, default=200, help="pooled samples of the overhead benchmark")
    check.add_argument("--dry-run-limit", type=float, default=330.0, help="seconds")
    check.add_argument("--benchmark-limit", type=float, default=180.0, help="seconds")
    check.add_argument("--out", default="reports/gpu")
    check.set_defaults(handler=run)
    get = commands.add_parser("fetch", help="download the wheels to carry (needs network access)")
    get.add_argument("--dest", default=".whl")
    get.add_argument("--present", help="the GPU machine's `pip freeze`: those packages are not carried")
    get.add_argument("--python", default="3.12")
    get.set_defaults(handler=fetch)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
