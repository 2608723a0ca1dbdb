import pytest
from transformers import AutoTokenizer

from harness.sources import corpus
from harness.sources.tokenizer import EOS_TOKEN, PAD_TOKEN, train_bpe_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(corpus.pretraining_paragraphs()[:300], vocab_size=512)


def test_round_trip_reproduces_text_exactly(tokenizer):
    text = "Question: Ava has 60 apples.\nAnswer: 5 + 6 = 11\n#### 11 — café, naïve, 東京"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_vocabulary_size_and_special_tokens(tokenizer):
    assert len(tokenizer) == 512
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.eos_token_id != tokenizer.pad_token_id


def test_digits_are_one_token_each(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("12345")["input_ids"])
    assert tokens == ["1", "2", "3", "4", "5"]


def test_no_special_token_is_added_silently(tokenizer):
    ids = tokenizer("hello")["input_ids"]
    assert tokenizer.eos_token_id not in ids


def test_saved_tokenizer_reloads_identically(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "def f(x):\n    return x * 42"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.pad_token_id == tokenizer.pad_token_id and reloaded.padding_side == "left"


def test_too_small_vocabulary_is_refused():
    with pytest.raises(ValueError, match="256 byte symbols"):
        train_bpe_tokenizer(["some text"], vocab_size=100)
