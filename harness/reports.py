"""Versioned JSON reports: what was measured, on what, with what, and how to reproduce it.

A report is one JSON object written atomically. Tables are stored in pandas'
``split`` layout (columns, index, data), so ``table(report, "pair")`` gives the
DataFrame back; missing values are ``null``.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness import __version__, cache

SCHEMA_VERSION = 1
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "peft", "lm_eval", "accelerate", "numpy",
            "pandas")


class ReportError(ValueError):
    """A report file is missing, corrupt, or of a schema this harness cannot read."""


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _source_revision() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "harness"],
                                    capture_output=True, text=True, timeout=5, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> dict:
    """Versions, machine and source revision, recorded in every report."""
    import torch

    return {
        "harness_version": __version__,
        "source": _source_revision(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def table_payload(frame: pd.DataFrame) -> dict:
    return json.loads(frame.to_json(orient="split", double_precision=15))


def table(report: dict, name: str) -> pd.DataFrame:
    """A table of a report as a DataFrame (index restored)."""
    try:
        payload = report["tables"][name]
    except KeyError:
        raise ReportError(f"report has no table {name!r}; it has {sorted(report.get('tables', {}))}") from None
    frame = pd.DataFrame(payload["data"], index=payload["index"], columns=payload["columns"], dtype=float)
    frame.index.name = "layer"
    return frame


def profile_report(profile) -> dict:
    """The report of a pair profile (``harness profile``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "profile",
        "environment": environment(),
        **profile.meta,
        "tables": {name: table_payload(getattr(profile, name)) for name in ("base", "sft", "pair")},
    }


def strict_json(value):
    """``value`` with every NaN or infinity replaced by None, so the report is valid JSON for any reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_report(path: Path, report: dict) -> Path:
    cache.write_json_atomic(Path(path), strict_json(report))
    return Path(path)


def load_report(path: Path) -> dict:
    """Read a report, refusing a missing, corrupt or incompatible file with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"no report at {path}")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path} is not valid JSON ({error}); restore it or regenerate it") from error
    if not isinstance(report, dict) or "schema_version" not in report:
        raise ReportError(f"{path} is not a harness report (no schema_version)")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ReportError(f"{path} has schema version {report['schema_version']}; this harness reads version "
                          f"{SCHEMA_VERSION}. Regenerate it with this version of the harness.")
    return report
