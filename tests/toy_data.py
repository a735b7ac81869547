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


def write_conllu(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    lines = []
    for i, sentence in enumerate(sentences, start=1):
        lines.append(f"# sent_id = s{i}")
        lines.append("# text = " + " ".join(w for w, _ in sentence))
        for j, (word, tag) in enumerate(sentence, start=1):
            lines.append(
                f"{j}\t{word}\t{word.lower()}\t{tag}\t_\t_\t{0 if j == 1 else 1}\t{'root' if j == 1 else 'dep'}\t_\t_"
            )
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
