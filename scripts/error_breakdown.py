"""Where a tagger's errors are, to tell what a recipe could still gain: one column's accuracy on the words that
training saw and those it did not, on words of one subword and of several, and how many dev words carry a label
that training never saw (which a head of whole labels cannot predict: a FEATS string, say).

    python scripts/error_breakdown.py --train_file data/ud/en_ewt/en_ewt-ud-train.conllu \
        --gold_file data/ud/en_ewt/en_ewt-ud-dev.conllu --system_file runs/dev.conllu --model_dir runs/model

Without ``--system_file`` it only counts the unseen labels. Words are compared lowercased, as an uncased
encoder sees them; subwords are counted with the model directory's tokenizer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from jsonargparse import auto_cli

from nasty_lightning.data.encoding import load_tokenizer
from nasty_lightning.formats.conllu import read_sentences


def subword_counts(tokenizer, sentences) -> list[int]:
    """How many subwords the tokenizer makes of each word of ``sentences``, in order."""
    counts = []
    for sentence in sentences:
        ids = tokenizer(sentence.words, is_split_into_words=True, add_special_tokens=False).word_ids()
        counts += [n for _, n in sorted(Counter(ids).items())]
    return counts


def main(
    *,
    train_file: Path,
    gold_file: Path,
    system_file: Path | None = None,
    model_dir: Path | None = None,
    column: str = "upos",
) -> dict[str, tuple[int, int]]:
    """Print the breakdown; returns (words, errors) by group.

    Args:
        train_file: The training file (CoNLL-U): which words and labels training saw.
        gold_file: The gold dev file.
        system_file: The same file as tagged by the model (``nasty-train tag``); none: count unseen labels only.
        model_dir: The model directory whose tokenizer counts subwords (needed with ``system_file``).
        column: The column to score.
    """
    train = read_sentences(train_file)
    seen_words = {w.lower() for s in train for w in s.words}
    seen_labels = {label for s in train for label in s.labels(column)}
    gold = read_sentences(gold_file)
    gold_labels = [label for s in gold for label in s.labels(column)]
    unseen = sum(label not in seen_labels for label in gold_labels)
    print(f"{column}: {unseen} of {len(gold_labels)} dev words ({100 * unseen / len(gold_labels):.3f}%) carry a label"
          " training never saw")  # fmt: skip
    if system_file is None:
        return {}
    predicted = [label for s in read_sentences(system_file) for label in s.labels(column)]
    if len(predicted) != len(gold_labels):
        raise SystemExit(f"{system_file} has {len(predicted)} words, {gold_file} {len(gold_labels)}")
    words = [w.lower() for s in gold for w in s.words]
    subwords = subword_counts(load_tokenizer(str(model_dir)), gold)
    groups = {
        "all words": [True] * len(words),
        "seen in training": [w in seen_words for w in words],
        "not seen in training": [w not in seen_words for w in words],
        "one subword": [n == 1 for n in subwords],
        "several subwords": [n > 1 for n in subwords],
    }
    wrong = [p != g for p, g in zip(predicted, gold_labels, strict=True)]
    result = {name: (sum(in_group), sum(w and i for w, i in zip(wrong, in_group, strict=True)))
              for name, in_group in groups.items()}  # fmt: skip
    total, errors = result["all words"]
    print(f"| {column} | words | share of words | accuracy | share of errors |\n|---|---|---|---|---|")
    for name, (n, e) in result.items():
        accuracy = 100 * (1 - e / n) if n else float("nan")
        print(f"| {name} | {n} | {100 * n / total:.1f}% | {accuracy:.2f} | {100 * e / max(errors, 1):.1f}% |")
    return result


if __name__ == "__main__":
    auto_cli(main)
