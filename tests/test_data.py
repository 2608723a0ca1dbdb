import pytest

from harness.sources import data, synthetic


@pytest.mark.parametrize("name", sorted(data.LOCAL_SOURCES))
def test_offline_sets_are_deterministic_for_a_seed(name):
    first = data.load_probe_set(name, 20, seed=3)
    again = data.load_probe_set(name, 20, seed=3)
    other = data.load_probe_set(name, 20, seed=4)
    assert first.texts == again.texts and first.digest() == again.digest()
    assert other.texts != first.texts and other.digest() != first.digest()
    assert len(first) == 20 and all(t.strip() for t in first.texts)


def test_generated_samples_do_not_depend_on_how_many_are_drawn():
    assert data.load_probe_set("gsm8k-local", 5).texts == data.load_probe_set("gsm8k-local", 50).texts[:5]


def test_paper_default_sizes():
    assert (data.TOKEN_LEVEL_SAMPLES, data.POOLED_SAMPLES, data.MAX_TOKENS) == (100, 1000, 256)
    assert len(data.load_probe_set("gsm8k-local", data.POOLED_SAMPLES)) == 1000


def test_paper_sets_are_all_named():
    assert set(data.HUB_SOURCES) == {"gsm8k", "mmlu", "wikitext", "ifeval", "humaneval", "mt_bench", "toxigen"}
    assert {name + "-local" for name in data.HUB_SOURCES} == set(data.LOCAL_SOURCES)


def test_too_small_set_is_a_clear_error():
    with pytest.raises(data.ProbeDataError, match=r"wikitext-local' has \d+ texts; 100000 were asked for"):
        data.load_probe_set("wikitext-local", 100_000)


@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_size_is_refused(n):
    with pytest.raises(data.ProbeDataError, match="at least 1"):
        data.load_probe_set("gsm8k-local", n)


def test_unknown_set_lists_the_known_ones():
    with pytest.raises(data.ProbeDataError, match="gsm8k-local"):
        data.load_probe_set("squad", 10)


def test_empty_texts_are_refused():
    with pytest.raises(data.ProbeDataError, match="is empty"):
        data.ProbeSet("empty", (), source="test", seed=0)
    with pytest.raises(data.ProbeDataError, match="1 empty texts"):
        data.ProbeSet("blank", ("fine", "   "), source="test", seed=0)


def test_hub_set_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(data.ProbeDataUnavailable, match="openai/gsm8k.*gsm8k-local"):
        data.load_probe_set("gsm8k", 10)


def test_wikitext_local_never_overlaps_pretraining_text():
    from harness.sources import corpus

    held_out = set(data.load_probe_set("wikitext-local", 50).texts)
    assert held_out.isdisjoint(corpus.pretraining_paragraphs())


@pytest.mark.parametrize("record", [synthetic.gsm8k_record, synthetic.mmlu_record])
def test_generated_splits_are_disjoint(record):
    def key(r):
        return r["question"] + "|" + "|".join(r.get("choices", []))

    train = {key(record(0, "train", i)) for i in range(2000)}
    test = {key(record(0, "test", i)) for i in range(300)}
    assert train.isdisjoint(test)


def test_gsm8k_format_answers_end_with_the_number():
    for i in range(30):
        record = synthetic.gsm8k_record(0, "test", i)
        number = synthetic.final_answer(record["answer"])
        assert record["answer"].endswith(f"#### {number}") and number.lstrip("-").isdigit()


def test_mmlu_format_has_four_choices_and_the_right_answer():
    for i in range(30):
        record = synthetic.mmlu_record(0, "test", i)
        assert len(record["choices"]) == 4 and 0 <= record["answer"] < 4
        assert len(set(record["choices"])) == 4
