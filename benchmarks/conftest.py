"""Fixtures for the benchmarks: the tiny default pair and probe texts of an exact token length."""

import pytest

from harness.sources import corpus, models, zoo
from harness.sources.data import ProbeSet


@pytest.fixture(scope="session")
def tiny_olmo2():
    built = zoo.build_pair("tiny_olmo2", progress=False)
    return models.resolve_pair(models.get_spec("tiny_olmo2"), progress=False), built


def long_probe(n: int, seed: int = 0) -> ProbeSet:
    """``n`` texts of at least 1,000 tokens each, so truncation sets their length exactly."""
    paragraphs = corpus.pretraining_paragraphs()
    texts = tuple(" ".join(paragraphs[(i * 37 + j) % len(paragraphs)] for j in range(40)) for i in range(n))
    return ProbeSet("long-reference-text", texts, source="local:reference", seed=seed)
