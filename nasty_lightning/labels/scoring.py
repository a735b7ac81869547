"""Scores of predicted labels against gold ones, as ``eval`` and ``quantize`` report them: accuracy and per-tag
precision, recall and F1 of each column, UFeats and lemma coverage where they apply, and AllTags as the UD scorer
defines it. Plain Python over labels: no model."""

from __future__ import annotations

from collections import Counter
from itertools import chain
from typing import TYPE_CHECKING, Any

from nasty_lightning.labels.heads import FEATS, LEMMA, Head, universal_features
from nasty_lightning.labels.lemmas import coverage

if TYPE_CHECKING:
    from nasty_lightning.formats.conllu import Sentence


def score(gold: list[str], predicted: list[str], per_tag: bool = True) -> dict[str, Any]:
    """Accuracy, counts and (with ``per_tag``) macro-F1 (the mean F1 of the tags in the gold labels or the
    predictions) and per-tag precision, recall, F1 and support."""
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    true_pos = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    gold_count, pred_count = Counter(gold), Counter(predicted)
    tags = {}
    for tag in sorted(set(gold_count) | set(pred_count)) if per_tag else ():
        tags[tag] = _prf(true_pos[tag], pred_count[tag], gold_count[tag]) | {"support": gold_count[tag]}
    result = {"accuracy": correct / len(gold) if gold else 0.0, "total": len(gold), "correct": correct}
    if per_tag:
        result["macro_f1"] = sum(m["f1"] for m in tags.values()) / len(tags) if tags else 0.0
        result["per_tag"] = tags
    return result


def score_sets(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Multi-label scores of texts' label sets: exact match (as ``accuracy`` too), micro-F1 (over every label
    decision), macro-F1 (the mean F1 of the labels in the gold sets or the predictions), and per label
    precision, recall, F1 and support (texts with the label)."""
    pairs = [(set(g), set(p)) for g, p in zip(gold, predicted, strict=True)]
    correct = sum(g == p for g, p in pairs)
    true_pos = Counter(label for g, p in pairs for label in g & p)
    gold_count = Counter(label for g, _ in pairs for label in g)
    pred_count = Counter(label for _, p in pairs for label in p)
    tags = {}
    for tag in sorted(set(gold_count) | set(pred_count)):
        tags[tag] = _prf(true_pos[tag], pred_count[tag], gold_count[tag]) | {"support": gold_count[tag]}
    micro = _prf(sum(true_pos.values()), sum(pred_count.values()), sum(gold_count.values()))["f1"]
    return {
        "accuracy": correct / len(pairs) if pairs else 0.0,
        "exact_match": correct / len(pairs) if pairs else 0.0,
        "total": len(pairs),
        "correct": correct,
        "micro_f1": micro,
        "macro_f1": sum(m["f1"] for m in tags.values()) / len(tags) if tags else 0.0,
        "per_tag": tags,
    }


def _prf(true_pos: int, predicted: int, gold: int) -> dict[str, float]:
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def report(result: dict[str, Any]) -> str:
    unit = result.get("unit", "words")
    lines = [f"accuracy: {result['accuracy']:.4f} ({result['correct']:,} of {result['total']:,} {unit} correct)"]
    if "exact_match" in result:
        lines = [
            f"exact match: {result['exact_match']:.4f} ({result['correct']:,} of {result['total']:,} {unit} with "
            "every label right)",
            f"micro-F1: {result['micro_f1']:.4f}",
        ]
    if unit == "texts":
        lines.append(f"macro-F1: {result['macro_f1']:.4f}")
    if "ufeats" in result:
        u = result["ufeats"]
        lines.append(f"UFeats (universal features only, as the UD scorer): {u['accuracy']:.4f}")
    if "reachable" in result:
        reached, total = result["reachable"]["lemmas"], result["reachable"]["of"]
        lines.append(f"{reached:,} of {total:,} gold lemmas ({reached / total:.2%}) have an edit script it knows")
    if "per_tag" not in result:
        return "\n".join(lines)
    lines += ["", f"{'tag':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for tag, m in result["per_tag"].items():
        lines.append(f"{tag:<12} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {m['support']:>9,}")
    return "\n".join(lines)


def column_scores(
    heads: list[Head], sentences: list[Sentence], predicted: dict[str, list[list[str]]]
) -> tuple[dict[str, dict[str, Any]], tuple[list[list[str]], list[list[str]]]]:
    """Every head's scores (``score``, plus UFeats and lemma coverage where they apply), by column, and the
    first column's gold and predicted labels of each sentence (its labelled words only)."""
    columns: dict[str, dict[str, Any]] = {}
    first_sentences: tuple[list[list[str]], list[list[str]]] = ([], [])
    for head in heads:
        gold_sentences, pred_sentences = [], []  # the labelled words of each sentence
        for sentence, tags in zip(sentences, predicted[head.column], strict=True):
            # a sentence head's: one label, in a list as the prediction is
            gold = [sentence.sentence_label(head.column)] if head.is_sentence else sentence.labels(head.column)
            if head.is_lemma:  # the UD scorer's Lemmas: a word without a gold lemma is right
                gold = [p if g is None else g for g, p in zip(gold, tags, strict=True)]
            pairs = [(g, p) for g, p in zip(gold, tags, strict=True) if g is not None]
            gold_sentences.append([g for g, _ in pairs])
            pred_sentences.append([p for _, p in pairs])
        gold, pred = list(chain.from_iterable(gold_sentences)), list(chain.from_iterable(pred_sentences))
        if head.multi_label:  # label sets, a|b
            columns[head.column] = score_sets([head.parts(g) for g in gold], [head.parts(p) for p in pred])
        else:
            columns[head.column] = score(gold, pred, per_tag=not head.is_lemma)
        if head.is_sentence:
            columns[head.column]["unit"] = "texts"
        if head.column == FEATS:  # the UD scorer's UFeats: universal features only
            ufeats = score([universal_features(g) for g in gold], [universal_features(p) for p in pred], False)
            columns[head.column]["ufeats"] = ufeats
        if head.is_lemma:  # how many gold lemmas the model's edit scripts can produce at all
            pairs = [(w, g) for s in sentences for w, g in zip(s.words, s.labels(LEMMA), strict=True) if g is not None]
            reached, total = coverage(pairs, head.vocab.labels)
            columns[head.column]["reachable"] = {"lemmas": reached, "of": total}
        if head is heads[0]:
            first_sentences = gold_sentences, pred_sentences
    return columns, first_sentences


def alltags(sentences: list[Sentence], predicted: dict[str, list[list[str]]], columns: list[str]) -> dict[str, Any]:
    """AllTags as the UD scorer has it: the share of words whose ``columns`` (of UPOS, XPOS, FEATS) are all
    right, FEATS compared on universal features only, over the words that have a value in all of them."""

    def value(column: str, v: str) -> str:
        return universal_features(v) if column == FEATS else v

    correct = total = 0
    for n, sentence in enumerate(sentences):
        gold = [sentence.labels(c) for c in columns]
        for w in range(len(sentence.words)):
            if all(g[w] is not None for g in gold):
                total += 1
                correct += all(
                    value(c, g[w]) == value(c, predicted[c][n][w]) for g, c in zip(gold, columns, strict=True)
                )
    return {"accuracy": correct / total if total else 0.0, "total": total, "correct": correct, "columns": columns}
