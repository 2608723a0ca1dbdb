"""Where reports go: one folder per pair and run, a `latest` pointer, and the commit they were made at."""

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.output import reports

ROOT = Path(__file__).resolve().parent.parent
WHEN = dt.datetime(2026, 11, 29, 12, 0, 0, tzinfo=dt.timezone.utc)


def test_a_run_folder_is_named_by_pair_utc_time_and_commit(tmp_path):
    folder = reports.run_folder(tmp_path, "tiny_olmo2", WHEN)
    assert folder.parent == tmp_path / "tiny_olmo2"
    assert re.fullmatch(r"20261129T120000Z-([0-9a-f]{10}|no-commit)(-dirty)?", folder.name), folder.name
    folder.mkdir(parents=True)
    again = reports.run_folder(tmp_path, "tiny_olmo2", WHEN)  # a second run in the same second keeps both
    assert again != folder and again.name == folder.name + "-2"


def _write_run(tmp_path, when, value):
    folder = reports.run_folder(tmp_path, "pair", when)
    reports.write_report(
        folder / "report.json", {"schema_version": reports.SCHEMA_VERSION, "kind": "x", "value": value}
    )
    reports.point_latest(folder)
    return folder


def test_latest_points_at_the_newest_run_and_every_reader_follows_it(tmp_path):
    _write_run(tmp_path, WHEN, 1)
    newest = _write_run(tmp_path, WHEN + dt.timedelta(hours=1), 2)
    latest = tmp_path / "pair" / reports.LATEST
    assert latest.resolve() == newest.resolve()
    for named in (latest, tmp_path / "pair", newest, newest / "report.json"):
        assert reports.load_report(named)["value"] == 2
    assert not list((tmp_path / "pair").glob(".latest*"))  # the link was swapped in, not left half made


def test_where_links_cannot_be_made_latest_is_a_file_naming_the_run(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("links are not allowed here")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    _write_run(tmp_path, WHEN, 1)
    newest = _write_run(tmp_path, WHEN + dt.timedelta(hours=1), 2)
    assert (tmp_path / "pair" / reports.LATEST).read_text().strip() == newest.name
    assert reports.load_report(tmp_path / "pair")["value"] == 2


def test_a_folder_without_a_report_is_refused_clearly(tmp_path):
    with pytest.raises(reports.ReportError, match="no report at"):
        reports.load_report(tmp_path)


def _revision_of_copy(package_root: Path) -> subprocess.CompletedProcess:
    shutil.copytree(ROOT / "harness", package_root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    script = "from harness.output import reports; print(reports._source_revision())"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=package_root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package_root)},
    )


def test_outside_a_git_checkout_no_commit_is_claimed_and_git_says_nothing(tmp_path):
    run = _revision_of_copy(tmp_path / "unpacked")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "{'commit': None, 'dirty': None}" and run.stderr == ""


def test_a_copy_inside_another_repository_does_not_take_its_commit(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@x",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "theirs",
        ],
        check=True,
    )
    run = _revision_of_copy(tmp_path / "site-packages")
    assert run.stdout.strip() == "{'commit': None, 'dirty': None}" and run.stderr == ""
