"""``nasty-train eval``: score an exported model on a labelled file, word by word."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from nasty_lightning.errors import UserError
from nasty_lightning.inference import Tagger, check_batch_size
from nasty_lightning.outputs import check_output, write_atomic
from nasty_lightning.reading import read_sentences


def score(gold: list[str], predicted: list[str]) -> dict[str, Any]:
    """Accuracy, counts and per-tag precision, recall, F1 and support."""
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    true_pos = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    gold_count, pred_count = Counter(gold), Counter(predicted)
    per_tag = {}
    for tag in sorted(set(gold_count) | set(pred_count)):
        precision = true_pos[tag] / pred_count[tag] if pred_count[tag] else 0.0
        recall = true_pos[tag] / gold_count[tag] if gold_count[tag] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tag[tag] = {"precision": precision, "recall": recall, "f1": f1, "support": gold_count[tag]}
    return {
        "accuracy": correct / len(gold) if gold else 0.0,
        "total": len(gold),
        "correct": correct,
        "per_tag": per_tag,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"accuracy: {result['accuracy']:.4f} ({result['correct']:,} of {result['total']:,} words correct)",
        "",
        f"{'tag':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}",
    ]
    for tag, m in result["per_tag"].items():
        lines.append(f"{tag:<12} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {m['support']:>9,}")
    return "\n".join(lines)


def evaluate(
    model_dir: str,
    test_file: str,
    output_json: str | None = None,
    confusion_png: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Tag every syntactic word of a labelled CoNLL-U (or IOB2) file and compare with its labels.

    Every word with a label counts once, in long sentences too; labels the model never saw count as
    wrong. Prints accuracy and a per-tag table.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model) or ``nasty-train export``.
        test_file: Labelled file to score, in the column the model was trained on.
        output_json: Also write the results as JSON (``accuracy`` is a fraction).
        confusion_png: Also draw the confusion matrix (gold rows, predicted columns) as a PNG.
        batch_size: Sentences per forward pass.
    """
    check_batch_size(batch_size)
    for option, path in (("--output_json", output_json), ("--confusion_png", confusion_png)):
        if path:
            check_output(path, option)
    tagger = Tagger.load(model_dir, batch_size=batch_size)
    sentences = read_sentences(test_file)
    predicted = tagger.predict([s.words for s in sentences], progress=True)
    gold, pred = [], []
    for sentence, tags in zip(sentences, predicted, strict=True):
        for label, tag in zip(sentence.labels(tagger.label_column), tags, strict=True):
            if label is not None:
                gold.append(label)
                pred.append(tag)
    if not gold:
        raise UserError(f"{test_file}: no word has a label in the column {tagger.label_column!r}")
    result = {"model_dir": model_dir, "test_file": test_file, **score(gold, pred)}
    print(report(result))
    if output_json:
        write_atomic(output_json, json.dumps(result, indent=2) + "\n")
    if confusion_png:
        write_atomic(confusion_png, plot_confusion(gold, pred))
    return result


def plot_confusion(gold: list[str], predicted: list[str]) -> bytes:
    """A PNG of the confusion matrix: gold tags in rows, predicted ones in columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = sorted(set(gold) | set(predicted))
    index = {t: i for i, t in enumerate(tags)}
    counts = [[0] * len(tags) for _ in tags]
    for g, p in zip(gold, predicted, strict=True):
        counts[index[g]][index[p]] += 1
    size = max(5, 0.45 * len(tags))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(tags)), tags, rotation=90)
    ax.set_yticks(range(len(tags)), tags)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    fig.colorbar(image)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()
