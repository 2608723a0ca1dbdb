"""The README is the user's path and no more; every document it names exists, and every relative link in the
docs leads somewhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_is_the_users_path_in_at_most_80_lines():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    for command in ("make run", "pytest suites --base", "harness verify --base"):  # the three ways to run it
        assert command in readme, command
    for outcome in ("**holds**", "**refuted**", "**inconclusive**"):
        assert outcome in readme
    assert "Zhao" in readme and "@article" in readme and "reports/<pair>/" in readme


def test_every_relative_link_of_the_docs_leads_to_a_file():
    documents = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", document.read_text()):
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert broken == []
