"""Subword alignment on tiny WordPiece, byte-level BPE and SentencePiece tokenizers."""

from __future__ import annotations

import pytest
from transformers import RobertaTokenizer

from nasty_lightning.data.encoding import (
    IGNORE,
    check_pretokenized,
    encode,
    load_tokenizer,
    special_tokens,
    word_chars,
)
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import CHAR_IDS, WORD_CHARS

HARD_WORDS = ["Unbelievably", ",", "postmanbarked", "", "Zürich", "\u200b", "can't", "São", "!", "élèves"]


@pytest.fixture(params=["tiny_bert", "tiny_roberta", "tiny_xlmr"])
def tokenizer(request):
    return load_tokenizer(str(request.getfixturevalue(request.param)))


def word_pieces(tokenizer, window):
    """The subword ids between consecutive word starts (the last word runs to the suffix)."""
    prefix, suffix = special_tokens(tokenizer)
    ends = window.word_starts[1:] + [len(window.input_ids) - len(suffix)]
    return [window.input_ids[a:b] for a, b in zip(window.word_starts, ends, strict=True)]


def test_first_subword_alignment_is_exact(tokenizer):
    labels = list(range(len(HARD_WORDS)))
    [window] = encode([HARD_WORDS], tokenizer, max_length=64, labels=[labels])
    assert window.labels == labels
    pieces = word_pieces(tokenizer, window)
    assert len(pieces) == len(HARD_WORDS)
    for word, got in zip(HARD_WORDS, pieces, strict=True):
        alone = tokenizer(["x", word], is_split_into_words=True, add_special_tokens=False)
        expected = [i for i, w in zip(alone["input_ids"], alone.word_ids(), strict=True) if w == 1]
        # a word that yields no subword (empty, zero-width) still gets a position: the unknown token
        assert got == (expected or [tokenizer.unk_token_id]), word
    assert len(pieces[2]) > 1  # a long word outside the tokenizer's training text splits into several pieces


def test_words_are_encoded_as_in_running_text(tokenizer):
    [window] = encode([["the", "cat", "sat"]], tokenizer, max_length=64)
    text = tokenizer("the cat sat")["input_ids"]
    # the first word may differ (no space before it in running text); the others must not
    assert window.input_ids[window.word_starts[1] :] == text[text.index(window.input_ids[window.word_starts[1]]) :]
    assert window.labels == [IGNORE] * 3


def test_roberta_without_prefix_space_is_caught(tiny_roberta):
    bad = RobertaTokenizer.from_pretrained(tiny_roberta, add_prefix_space=False)
    with pytest.raises(UserError, match="add_prefix_space"):
        check_pretokenized(bad, "tiny")
    check_pretokenized(load_tokenizer(str(tiny_roberta)), "tiny")


def test_long_sentence_is_split_and_every_word_labelled_once(tokenizer):
    words = (HARD_WORDS * 8)[:70]
    labels = list(range(len(words)))
    windows = encode([["short", "one"], words], tokenizer, max_length=24, labels=[[0, 1], labels])
    long = [w for w in windows if w.sentence == 1]
    assert len(long) > 2
    assert all(len(w.input_ids) <= 24 for w in windows)
    assert [label for w in long for label in w.labels] == labels
    assert [w.first_word for w in long] == [0] + [
        sum(len(v.word_starts) for v in long[:i]) for i in range(1, len(long))
    ]
    unsplit = encode([words], tokenizer, max_length=512)[0]
    assert [p for w in long for p in word_pieces(tokenizer, w)] == word_pieces(tokenizer, unsplit)


def test_word_longer_than_a_window_is_an_error(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    with pytest.raises(UserError, match="raise --data.max_length"):
        encode([["internationalization" * 5]], tokenizer, max_length=6)


def test_unknown_model_lists_the_presets(tmp_path):
    with pytest.raises(UserError, match="preset: minilm, roberta_base"):
        load_tokenizer(str(tmp_path / "no-such-model"))


def test_every_subword_carries_its_words_characters(tokenizer):
    [window] = encode([HARD_WORDS], tokenizer, max_length=64)
    prefix, suffix = special_tokens(tokenizer)
    assert len(window.chars) == len(window.input_ids)
    assert window.chars[: len(prefix)] == [()] * len(prefix)  # special tokens: no characters
    assert window.chars[len(window.chars) - len(suffix) :] == [()] * len(suffix)
    ends = window.word_starts[1:] + [len(window.input_ids) - len(suffix)]
    for word, a, b in zip(HARD_WORDS, window.word_starts, ends, strict=True):
        assert window.chars[a:b] == [word_chars(word)] * (b - a), word
    assert word_chars("Zürich") != word_chars("zürich")  # case kept: the uncased subwords lose it
    long = word_chars("internationalisation")  # the first and last eight: prefix and suffix
    assert long == word_chars("internat") + word_chars("lisation") and len(long) == WORD_CHARS
    assert all(0 < i < CHAR_IDS for i in word_chars("日本語 élèves \U0001f600"))
