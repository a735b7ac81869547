"""The casing embedding: an uncased encoder learns what capitals say, and the saved model keeps it."""

from __future__ import annotations

import json
import random

import pytest
import torch
from clirun import accuracy_off_and_on
from tiny_models import build_bert
from toy_data import write_conllu

from nasty_lightning.data.batch import Batch
from nasty_lightning.data.encoding import casing_class, encode, load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import CASINGS
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.training.module import TokenTagger

WORDS = ["cat", "dog", "mat", "the", "postman", "works", "text", "butter", "sat", "ran"]
SHAPES = {"NOUN": str.lower, "PROPN": str.title, "X": str.upper}  # the tag is the word's casing, nothing else


def by_case(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    return [
        [(SHAPES[tag](rng.choice(WORDS)), tag) for tag in rng.choices(list(SHAPES), k=rng.randint(3, 7))]
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    ("word", "name"),
    [("dog", "lower"), ("Dog", "title"), ("I", "title"), ("É", "title"), ("NASA", "upper"), ("iPhone", "mixed"),
     ("McDonald", "mixed"), ("1990", "digits"), ("3.14", "digits"), ("A4", "letters_digits"), ("über", "lower"),
     (",", "other"), ("--", "other")],
)  # fmt: skip
def test_casing_classes(word, name):
    assert CASINGS[casing_class(word)] == name


def test_every_subword_carries_its_words_casing(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    words = ["Unbelievably", ",", "NASA", "postmanbarked", "3.14"]
    [window] = encode([words], tokenizer, max_length=64)
    ends = [*window.word_starts[1:], len(window.input_ids) - 1]
    assert window.casing[0] == window.casing[-1] == 0  # [CLS], [SEP]
    for word, start, end in zip(words, window.word_starts, ends, strict=True):
        assert window.casing[start:end] == [casing_class(word)] * (end - start), word
    [short, *rest] = encode([words], tokenizer, max_length=8)  # split into windows: each keeps its words' casing
    assert rest and all(len(w.casing) == len(w.input_ids) for w in [short, *rest])


def test_a_new_casing_embedding_changes_nothing_until_trained(tiny_bert):
    labels = ["NOUN", "PROPN"]
    plain = TokenTagger(str(tiny_bert), labels=labels).eval()
    cased = TokenTagger(str(tiny_bert), labels=labels, casing=True).eval()
    cased.model.load_state_dict(plain.model.state_dict())
    ids, mask, casing = torch.tensor([[2, 7, 8, 3]]), torch.ones(1, 4, dtype=torch.long), torch.tensor([[0, 2, 3, 0]])
    with torch.no_grad():
        assert torch.allclose(plain(Batch(ids, casing, mask))[0], cased(Batch(ids, casing, mask))[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.integration
def test_an_uncased_encoder_learns_capitals_only_with_casing(tmp_path):
    uncased = build_bert(tmp_path / "uncased", cased=False)
    data = {"train": write_conllu(tmp_path / "train.conllu", by_case(64, 0)),
            "dev": write_conllu(tmp_path / "dev.conllu", by_case(17, 1))}  # fmt: skip
    accuracy = accuracy_off_and_on(uncased, data, tmp_path, "casing")
    # Lowercased, the three tags are the same words: a guess; with casing they are trivial.
    assert accuracy["false"] < 0.6 and accuracy["true"] > 0.95, accuracy

    model_dir = tmp_path / "casing-true" / "model"
    assert json.loads((model_dir / "nasty_lightning.json").read_text())["casing"] == list(CASINGS)
    tagger = Tagger.load(model_dir)
    tagged = tagger.tag([["dog", "DOG", "Dog", "mat", "Mat"]])[0]
    assert [t for _, t in tagged] == ["NOUN", "X", "PROPN", "NOUN", "PROPN"]

    meta = json.loads((model_dir / "nasty_lightning.json").read_text())
    meta["casing"] = [*CASINGS, "emoji"]
    (model_dir / "nasty_lightning.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="trained with other casing classes"):
        Tagger.load(model_dir)
