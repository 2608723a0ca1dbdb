"""docs/controls.md is written from the controls' own catalogue, and kept up to date."""

from pathlib import Path

from harness.plants import catalogue, controls_doc

ROOT = Path(__file__).resolve().parent.parent


def test_the_controls_document_is_the_catalogues_own_and_up_to_date():
    written = (ROOT / controls_doc.DOCUMENT).read_text()
    assert written == controls_doc.markdown(), "run `python -m harness.plants.controls_doc` and commit the result"
    assert all(f"`{name}`" in written for name, control in catalogue.CONTROLS.items() if control.ladder is None)
    assert all(f"`{name}`" in written for name in catalogue.LADDERS)
