"""The lemma lexicon: the lemmas training gave each word, which correct a predicted lemma a seen word never had."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.formats.model_dir import LEXICON_FILE, read_lexicon, write_lexicon
from nasty_lightning.labels.lemmas import LemmaLexicon

CONLLU = (
    "1\tsaw\tsee\tVERB\t_\t_\t0\troot\t_\t_\n2\tsaws\tsaw\tNOUN\t_\t_\t1\tobj\t_\t_\n\n"
    "1\tsaw\tsee\tVERB\t_\t_\t0\troot\t_\t_\n2\tsaw\tsaw\tNOUN\t_\t_\t1\tobj\t_\t_\n\n"
    "1\tsaw\tsaw\tVERB\t_\t_\t0\troot\t_\t_\n2\tI\t_\tPRON\t_\t_\t1\tnsubj\t_\t_\n\n"
)


@pytest.fixture
def sentences(tmp_path):
    path = tmp_path / "t.conllu"
    path.write_text(CONLLU)
    return read_sentences(path)


def test_learn_counts_lemmas_by_form_and_tag_most_frequent_first(sentences):
    lexicon = LemmaLexicon.learn(sentences, "upos")
    # "I" has no lemma (_): not in the lexicon
    assert lexicon.lemmas == {"saw\tVERB": ["see", "saw"], "saws\tNOUN": ["saw"], "saw\tNOUN": ["saw"]}
    assert LemmaLexicon.learn(sentences, None).lemmas == {"saw": ["see", "saw"], "saws": ["saw"]}


def test_only_a_lemma_the_word_never_had_is_replaced(sentences):
    lexicon = LemmaLexicon.learn(sentences, "upos")
    words = ["saw", "saw", "saw", "saws", "sawed"]
    tags = ["VERB", "VERB", "NOUN", "NOUN", "VERB"]
    predicted = ["sa", "saw", "see", "saws", "sawe"]
    # a lemma it never had: its most frequent; one it had: kept; a tag or a word training never saw: kept
    assert lexicon.correct(words, predicted, tags) == ["see", "saw", "saw", "saw", "sawe"]
    untagged = LemmaLexicon.learn(sentences, None)
    assert untagged.correct(["saw", "saws"], ["sa", "sa"], None) == ["see", "saw"]


def test_the_file_round_trips_whatever_characters_a_word_holds(tmp_path):
    lexicon = LemmaLexicon("upos", {'"a\tb"\tX': ["ä \\ b"], "ß\tY": ["ss", "SS"], "e\u0301\tZ": ["\u00e9"]})
    write_lexicon(tmp_path, lexicon.to_dict())
    assert read_lexicon(tmp_path) == lexicon.to_dict()
    assert LemmaLexicon.from_dict(read_lexicon(tmp_path), "f", ["upos", "lemma"]) == lexicon
    assert len((tmp_path / LEXICON_FILE).read_text(encoding="utf-8").splitlines()) == 5  # one word to a line
    assert read_lexicon(tmp_path / "nowhere") is None


@pytest.mark.parametrize(
    ("data", "columns", "message"),
    [
        ({"tag_column": "xpos", "lemmas": {}}, ["upos", "lemma"], "its tag column one the model predicts"),
        ({"tag_column": None, "lemmas": {"a": "b"}}, ["lemma"], "lemmas: {word: [lemma, ...]}"),
        ({"tag_column": None, "lemmas": {"a": [""]}}, ["lemma"], "lemmas: {word: [lemma, ...]}"),
        ({"tag_column": None, "lemmas": {"a": []}}, ["lemma"], "lemmas: {word: [lemma, ...]}"),
        ({"tag_column": None, "lemmas": {"a": [1]}}, ["lemma"], "lemmas: {word: [lemma, ...]}"),
        (["a"], ["lemma"], "lemmas: {word: [lemma, ...]}"),
        ({"tag_column": None, "lemmas": {"a": ["b"]}}, ["upos"], "a lemma lexicon for a model that predicts no lemmas"),
    ],
)
def test_a_malformed_lexicon_is_refused_naming_its_file(data, columns, message):
    with pytest.raises(UserError, match="^m/lemma_lexicon.json: ") as err:
        LemmaLexicon.from_dict(data, "m/lemma_lexicon.json", columns)
    assert message in str(err.value)


def test_the_data_module_learns_it_from_the_training_sample(morphology):
    def lexicon(**options):
        data = TaggingDataModule(train_file=str(morphology["train"]), cache_dir=None, **options)
        return data.lemma_lexicon, data.state_dict()["lemma_lexicon"]

    learned, saved = lexicon(label_column=["upos", "lemma"])
    assert learned.tag_column == "upos" and learned.lemmas["sat\tVERB"] == ["sit"] and saved == learned.to_dict()
    assert lexicon(label_column=["xpos", "lemma"])[0].tag_column is None
    sample, _ = lexicon(label_column=["upos", "lemma"], max_train_sentences=5)
    assert set(sample.lemmas) < set(learned.lemmas)
    assert lexicon(label_column=["upos", "lemma"], lemma_lexicon=False) == (None, None)
    assert lexicon(label_column="upos") == (None, None)


@pytest.mark.skipif(not (SHARED_DATA / "ud" / "en_ewt").is_dir(), reason="needs ../shared/data")
def test_on_ewt_it_corrects_what_the_scripts_cannot_reach():
    """Every EWT dev word seen in training with its lemma and UPOS gets that lemma back from any wrong guess."""
    train = read_sentences(SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-train.conllu")
    lexicon = LemmaLexicon.learn(train, "upos")
    dev = read_sentences(SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu")
    fixed = total = 0
    for s in dev:
        gold, tags = s.labels("lemma"), s.labels("upos")
        corrected = lexicon.correct(s.words, ["\u0000"] * len(s.words), tags)  # a lemma no word ever had
        for form, lemma, tag, c in zip(s.words, gold, tags, corrected, strict=True):
            if lemma is not None and f"{form}\t{tag}" in lexicon.lemmas:
                total += 1
                fixed += c == lemma
    assert total > 20_000 and fixed / total > 0.99
