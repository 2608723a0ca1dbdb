"""English text that ships with Python, for offline pretraining and probe sets.

``pydoc_data.topics`` holds about 465k characters of the Python reference
manual. Paragraphs are split into a pretraining part and a held-out part by a
hash of their text, so the split never depends on iteration order and the
held-out paragraphs (used as the offline WikiText-style probe set) are never
seen in pretraining.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

HELD_OUT_SHARE = 0.1  # fraction of paragraphs kept out of pretraining


@lru_cache(maxsize=1)
def reference_paragraphs() -> tuple[str, ...]:
    """Every paragraph of the Python reference topics, whitespace-normalised, in topic order."""
    from pydoc_data.topics import topics

    paragraphs: list[str] = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            text = " ".join(block.split())
            if len(text) >= 40:  # drop headings and rulers
                paragraphs.append(text)
    return tuple(paragraphs)


def _is_held_out(paragraph: str) -> bool:
    bucket = int(hashlib.sha256(paragraph.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < HELD_OUT_SHARE


def pretraining_paragraphs() -> list[str]:
    return [p for p in reference_paragraphs() if not _is_held_out(p)]


def held_out_paragraphs() -> list[str]:
    return [p for p in reference_paragraphs() if _is_held_out(p)]
