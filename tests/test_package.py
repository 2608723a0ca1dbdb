"""The habits of a maintained package: one version, a licence, type information, and a changelog that keeps
up with the format versions."""

import importlib.metadata
import re
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_written_once():
    assert importlib.metadata.version("layerwise-sft-harness") == harness.__version__
    project = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in project and not re.search(r'^version\s*=\s*"', project, re.M)


def test_the_licence_is_the_one_the_package_declares():
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License\n                           Version 2.0" in (ROOT / "LICENSE").read_text()


def test_both_packages_ship_their_type_information():
    assert (ROOT / "harness" / "py.typed").is_file() and (ROOT / "pytest_layerwise_sft" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()


def test_the_changelog_lists_every_format_version_at_its_current_value():
    declared = {}
    for path in (ROOT / "harness").rglob("*.py"):
        for name, value in re.findall(r"^(\w+_FORMAT|SCHEMA_VERSION) = (\d+)", path.read_text(), re.M):
            declared[name] = value
    assert len(declared) >= 12
    changelog = (ROOT / "CHANGELOG.md").read_text()
    listed = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", changelog, re.M))
    assert listed == declared
