"""Versioned JSON reports: what was measured, on what, with what, and how to reproduce it.

A report is one JSON object written atomically. Tables are stored in pandas'
``split`` layout (columns, index, data), so ``table(report, "pair")`` gives the
DataFrame back; missing values are ``null``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness import __version__, cache
from harness.errors import BadInputError

SCHEMA_VERSION = 3
LATEST = "latest"  # in each pair's folder of reports: the newest run
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "peft", "lm_eval", "accelerate", "numpy", "pandas")


class ReportError(BadInputError):
    """A report file is missing, corrupt, or of a schema this harness cannot read."""


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _source_revision() -> dict:
    """The commit of the harness's own checkout, when it runs from one (git's messages are kept quiet, and an
    installed copy inside somebody else's repository is not taken for a checkout of the harness)."""
    root = Path(__file__).resolve().parents[2]  # harness/output/reports.py -> the checkout

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return {"commit": None, "dirty": None}
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "harness"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def check_report_dir(report_dir: Path | str, what: str = "report folder") -> None:
    """Refuse a report folder (or another folder a run writes into, named by ``what``) that cannot be written,
    before any work (not at the end of a long run)."""
    target = Path(report_dir)
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        kind = "a file" if existing is not None and existing.is_file() else "not a folder that can be written"
        raise BadInputError(f"the {what} {report_dir} cannot be written: {existing} is {kind}")


def run_folder(report_dir: Path, group: str, when: dt.datetime | None = None) -> Path:
    """``<report_dir>/<group>/<UTC time>-<commit>/``: where one run writes its report, figures and summary for
    one pair (or for the planted controls). A second run in the same second gets a numbered folder."""
    source = _source_revision()
    commit = (source["commit"] or "no-commit")[:10] + ("-dirty" if source["dirty"] else "")
    stamp = (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(report_dir) / group / f"{stamp}-{commit}"
    for number in range(2, 1000):
        if not folder.exists():
            break
        folder = folder.with_name(f"{stamp}-{commit}-{number}")
    return folder


def point_latest(folder: Path) -> Path:
    """Make ``<group>/latest`` point at ``folder`` (a relative link, replaced atomically: a reader never finds
    it missing). Where links cannot be made, ``latest`` is a text file holding the folder's name."""
    latest = folder.parent / LATEST
    temporary = folder.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(folder.name, target_is_directory=True)
    except OSError:
        cache.write_text_atomic(latest, folder.name + "\n")
        return latest
    os.replace(temporary, latest)
    return latest


def report_file(path: Path) -> Path:
    """The report a path names: a report file, a run folder, or a pair's folder or ``latest`` pointer."""
    path = Path(path)
    if path.is_file() and path.name == LATEST:  # the text form of the pointer
        path = path.parent / path.read_text().strip()
    if path.is_dir() and (path / LATEST).exists() and not (path / "report.json").exists():
        return report_file(path / LATEST)
    return path / "report.json" if path.is_dir() else path


REPORT_KINDS = ("claims", "lora", "profile", "evaluate", "dry-run", "baseline")


def new_report(kind: str, **body) -> dict:
    """Every report the harness writes, of any kind, from the command line or the plugin: its header (schema
    version, kind, environment), then ``body``."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}; the harness writes {', '.join(REPORT_KINDS)}")
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "environment": environment(), **body}


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
    """A numeric table in pandas' ``split`` layout, every value at full precision (a rescored verdict must equal
    the one computed from the measured table)."""
    return {
        "columns": [str(column) for column in frame.columns],
        "index": frame.index.tolist(),
        "data": frame.to_numpy(dtype=float).tolist(),
    }


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
    return new_report(
        "profile",
        **profile.meta,
        tables={name: table_payload(getattr(profile, name)) for name in ("base", "sft", "pair")},
    )


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
    """Read a report (a file, a run folder or a ``latest`` pointer), refusing a missing, corrupt or incompatible
    file with a clear error."""
    path = report_file(path)
    if not path.is_file():
        raise ReportError(f"no report at {path}")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path} is not valid JSON ({error}); restore it or regenerate it") from error
    if not isinstance(report, dict) or "schema_version" not in report:
        raise ReportError(f"{path} is not a harness report (no schema_version)")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ReportError(
            f"{path} has schema version {report['schema_version']}; this harness reads version "
            f"{SCHEMA_VERSION}. Regenerate it with this version of the harness."
        )
    return report
