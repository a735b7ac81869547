"""A toy treebank whose tags follow from the words, so even a tiny random model can learn it."""

from __future__ import annotations

import random
from pathlib import Path

LEXICON = {
    "DET": ["the", "a", "every", "this"],
    "NOUN": ["cat", "dog", "mat", "postman", "grammar", "Zürich"],
    "VERB": ["sat", "barked", "ran", "believes", "studies"],
    "ADP": ["on", "at", "in", "near"],
    "ADJ": ["big", "small", "internationalization"],
}
PATTERN = ["DET", "ADJ", "NOUN", "VERB", "ADP", "DET", "NOUN"]


def toy_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        tags = [t for t in PATTERN if t != "ADJ" or rng.random() < 0.5]
        words = [(rng.choice(LEXICON[t]), t) for t in tags]
        sentences.append(words + [(".", "PUNCT")])
    return sentences


# For ``morphology=True``: XPOS, FEATS and LEMMA that follow from the word too (irregular lemmas included).
XPOS = {"DET": "DT", "NOUN": "NN", "VERB": "VBD", "ADP": "IN", "ADJ": "JJ", "PUNCT": "."}
FEATS = {"the": "Definite=Def|PronType=Art", "a": "Definite=Ind|PronType=Art", "NOUN": "Number=Sing"}
LEMMAS = {"sat": "sit", "ran": "run", "studies": "study", "believes": "believe", "barked": "bark"}


def morphology(word: str, tag: str) -> tuple[str, str, str]:
    """The lemma, XPOS and FEATS of a toy word."""
    feats = FEATS.get(word, FEATS.get(tag, "Tense=Past" if tag == "VERB" else "_"))
    lemma = LEMMAS.get(word, word if tag == "NOUN" and word[0].isupper() else word.lower())
    return lemma, XPOS[tag], feats


def genre(sentence: list[tuple[str, str]]) -> str:
    """A toy sentence's label: ``pets`` when it names a cat or a dog, else ``other``."""
    return "pets" if any(w in ("cat", "dog") for w, _ in sentence) else "other"


def write_conllu(
    path: Path, sentences: list[list[tuple[str, str]]], morphology_columns: bool = False, genres: bool = False
) -> Path:
    """A CoNLL-U file of the toy sentences: UPOS, and with ``morphology_columns`` LEMMA, XPOS and FEATS (else
    the lower-cased word, ``_`` and ``_``); with ``genres`` a ``# genre = ...`` comment (``genre``)."""
    lines = []
    for i, sentence in enumerate(sentences, start=1):
        lines.append(f"# sent_id = s{i}")
        if genres:
            lines.append(f"# genre = {genre(sentence)}")
        lines.append("# text = " + " ".join(w for w, _ in sentence))
        for j, (word, tag) in enumerate(sentence, start=1):
            lemma, xpos, feats = morphology(word, tag) if morphology_columns else (word.lower(), "_", "_")
            head, deprel = (0, "root") if j == 1 else (1, "dep")
            lines.append(f"{j}\t{word}\t{lemma}\t{tag}\t{xpos}\t{feats}\t{head}\t{deprel}\t_\t_")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Named entities: sentences of filler words, people (PER) and places (LOC), as IOB2. Every name is spelt with
# letters the tiny BERT's vocabulary has: a name that became [UNK] would leave its type unlearnable.
PEOPLE = [["Ann"], ["Tina", "Smith"], ["Ulla"], ["Ian", "Lee", "Stone"]]
PLACES = [["Paris"], ["Santa", "Ana"], ["Zagreb"], ["São", "Paulo"]]
FILLER = ["saw", "met", "in", "near", "the", "dog", "and", "visited"]


def toy_ner(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Sentences of filler words, names (PER) and places (LOC), two of them adjacent now and then."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words: list[tuple[str, str]] = []
        for _ in range(rng.randint(2, 4)):
            words += [(rng.choice(FILLER), "O") for _ in range(rng.randint(1, 2))]
            kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES)])
            name = rng.choice(names)
            words += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(name)]
        sentences.append(words + [(".", "O")])
    return sentences


def write_iob2(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    lines = []
    for sentence in sentences:
        lines += [f"{i}\t{w}\t{t}\t-\t-" for i, (w, t) in enumerate(sentence, start=1)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
