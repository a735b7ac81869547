"""``nasty-train eval``: score an exported model on a labelled file, word by word, and entity by entity
for IOB2 tags."""

from __future__ import annotations

import io
import json
import math
import sys
from collections import Counter
from itertools import chain
from typing import Any, Literal

import numpy as np

from nasty_lightning.errors import UserError
from nasty_lightning.formats.outputs import check_output, write_atomic
from nasty_lightning.formats.texts import read_labelled
from nasty_lightning.labels.entities import entity_report, entity_scores, is_iob2
from nasty_lightning.labels.heads import Head, LabelVocab, tag_columns
from nasty_lightning.labels.scoring import alltags, column_scores, report, score


def evaluate(
    model_dir: str,
    test_file: str,
    output_json: str | None = None,
    confusion_png: str | None = None,
    batch_size: int = 64,
    constrained: bool = True,
    threads: int | None = None,
    precision: Literal["float32", "bf16", "auto"] = "float32",
    text_column: str = "text",
    zero_shot_labels: list[str] | dict[str, str] | None = None,
    label_column: str = "label",
) -> dict[str, Any]:
    """Tag every syntactic word of a labelled CoNLL-U (or IOB2) file and compare with its labels; or label every
    text of a TSV, CSV or JSON Lines file (or every sentence of a CoNLL-U file, in its ``# column = ...``
    comment) and compare with its labels, for a model that labels texts: accuracy, macro-F1 and a per-label table.

    Every word with a label counts once, in long sentences too; labels the model never saw count as
    wrong. Prints accuracy and a per-tag table for every column the model predicts (lemmas: accuracy only;
    a word without a gold lemma, ``_``, counts as right, as the UD scorer counts it), and with UPOS, XPOS
    and FEATS, AllTags: the share of words with all of those the model predicts right. For IOB2 tags
    (NER), also precision, recall and F1 over exact entity spans (strict IOB2, as seqeval's strict mode),
    micro and per entity type.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model) or ``nasty-train export``.
        test_file: Labelled file to score, with the columns the model predicts.
        output_json: Also write the results as JSON: ``accuracy`` (a fraction) and ``per_tag`` are the first
            column's; a model of several columns adds ``columns`` ({column: {accuracy, ...}}) and ``alltags``;
            IOB2 tags add ``f1``, ``precision``, ``recall`` and ``per_type``.
        confusion_png: Also draw the confusion matrix of the first column (gold rows, predicted columns) as a PNG.
        batch_size: Sentences per forward pass.
        constrained: For IOB2 tags, each sentence's best valid tag sequence (Viterbi: no I-X after O or after
            another type), as tag and Tagger give; false scores each word's own best tag instead.
        threads: CPU threads (default: the cores this process may use, at most 4).
        precision: The weights' type: float32 (as validation in fit scores the model); bf16, bfloat16, faster
            where the CPU computes it natively (AVX512-BF16, AMX; Arm BF16) and a word in a few thousand tagged
            differently (docs/benchmarks.md); auto, bf16 where native, float32 elsewhere. Quantized models: INT8.
        text_column: In a file of labelled texts (TSV, CSV, JSON Lines), the column or key of the text.
        zero_shot_labels: Label the texts without training: ``--model_dir`` is then a pretrained sentence encoder
            (``minilm``, a hub id or a local directory), and each text gets the label whose name, or description
            (``{label: description}``), its embedding is most similar to. What fine-tuning gains over this.
        label_column: With ``--zero_shot_labels``: the column (or CoNLL-U comment) of the gold labels.
    """
    from nasty_lightning.inference.runtime import check_batch_size, use_threads  # here: --help needs no PyTorch
    from nasty_lightning.inference.tagger import Tagger

    check_batch_size(batch_size)
    threads = use_threads(threads)
    for option, path in (("--output_json", output_json), ("--confusion_png", confusion_png)):
        if path:
            check_output(path, option)
    if zero_shot_labels is not None:
        return evaluate_zero_shot(
            model_dir, test_file, zero_shot_labels, label_column, text_column, batch_size, output_json, confusion_png
        )
    tagger = Tagger.load(model_dir, batch_size=batch_size, threads=threads, precision=precision)
    tagger.constrained = constrained
    if confusion_png and tagger.heads[0].multi_label:
        raise UserError("--confusion_png: a text of a multi-label model has several labels; see the per-label table")
    sentences = read_labelled(test_file, tuple(tagger.columns), text_column)
    tagger.heads.check_gold(test_file, sentences)
    for head in tagger.heads:
        if not head.is_lemma:  # lemma scripts the model lacks are reported as coverage
            values = (
                [v for s in sentences for v in head.parts(s.sentence_label(head.column))]
                if head.is_sentence
                else [v for s in sentences for v in s.labels(head.column)]
            )
            unseen = Counter(v for v in values if v is not None and v not in head.vocab)
            if unseen:
                print(
                    f"{test_file}: {sum(unseen.values())} words carry {head.column} labels the model never saw in "
                    f"training ({', '.join(sorted(unseen))}); they count as wrong",
                    file=sys.stderr,
                )
    predicted = tagger.predict([s.words for s in sentences], progress=True)
    columns, first_sentences = column_scores(tagger.heads, sentences, predicted)
    result = {"model_dir": model_dir, "test_file": test_file, **columns[tagger.label_column]}
    lines = [report(columns[tagger.label_column])]
    if len(columns) > 1:
        for column, scores in list(columns.items())[1:]:
            lines += ["", f"== {column} ==", report(scores)]
        result["columns"] = columns
    tagged = tag_columns(tagger.columns)
    if tagged:
        result["alltags"] = alltags(sentences, predicted, tagged)
        lines += ["", f"alltags ({', '.join(tagged)} all right, as the UD scorer): {result['alltags']['accuracy']:.4f}"]
    print("\n".join(lines))
    if is_iob2(list(chain.from_iterable(first_sentences[0]))):
        result.update(entity_scores(*first_sentences))
        print("\n" + entity_report(result))
    if output_json:
        write_atomic(output_json, json.dumps(result, indent=2) + "\n")
    if confusion_png:
        gold, pred = (list(chain.from_iterable(x)) for x in first_sentences)
        write_atomic(confusion_png, plot_confusion(gold, pred, model_dir, test_file))
    return result


def evaluate_zero_shot(
    model_name: str,
    test_file: str,
    labels: list[str] | dict[str, str],
    label_column: str,
    text_column: str,
    batch_size: int,
    output_json: str | None,
    confusion_png: str | None,
) -> dict[str, Any]:
    """``eval --zero_shot_labels``: the texts of ``test_file`` labelled by ``ZeroShotClassifier``, scored."""
    from nasty_lightning.inference.zero_shot import ZeroShotClassifier, label_texts

    head = Head(label_column, LabelVocab(tuple(sorted(label_texts(labels)[0]))))
    if not head.is_sentence:
        raise UserError(f"--label_column {label_column} is a word's column: zero-shot labelling labels texts")
    sentences = read_labelled(test_file, (label_column,), text_column)
    gold = head.sentence_targets(test_file, sentences, complete=False)
    texts = [s.tokens.metadata.get("text") or " ".join(s.words) for s in sentences]
    classifier = ZeroShotClassifier(model_name, labels, batch_size=batch_size)
    predicted = classifier.classify(texts)
    pairs = [(g, p) for g, p in zip(gold, predicted, strict=True) if g is not None]
    unknown = sorted({g for g, _ in pairs} - set(head.vocab.labels))
    if unknown:
        print(
            f"{test_file}: gold labels not among --zero_shot_labels ({', '.join(unknown)}); they count as wrong",
            file=sys.stderr,
        )
    result = {"model_dir": model_name, "test_file": test_file, "zero_shot": True}
    result |= score([g for g, _ in pairs], [p for _, p in pairs]) | {"unit": "texts"}
    print(report(result))
    if output_json:
        write_atomic(output_json, json.dumps(result, indent=2) + "\n")
    if confusion_png:
        gold_labels, predicted_labels = [g for g, _ in pairs], [p for _, p in pairs]
        write_atomic(confusion_png, plot_confusion(gold_labels, predicted_labels, model_name, test_file))
    return result


def confusion(gold: list[str], predicted: list[str]) -> tuple[list[str], np.ndarray]:
    """The tags (gold and predicted, sorted) and the counts of words by gold tag (rows) and predicted tag
    (columns)."""
    tags = sorted(set(gold) | set(predicted))
    index = {t: i for i, t in enumerate(tags)}
    counts = np.zeros((len(tags), len(tags)), dtype=np.int64)
    for g, p in zip(gold, predicted, strict=True):
        counts[index[g], index[p]] += 1
    return tags, counts


def row_shares(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum: the share of a gold tag's words given each predicted tag. A tag that is
    only ever predicted has a row of zeros."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def _percent(share: float) -> str:
    """A share as a short percentage that never rounds an error away: 99.96% is 99.9, 0.04% is <0.1."""
    p = 100 * share
    if p in (0, 100):
        return f"{p:.0f}"
    if p < 0.1:
        return "<0.1"
    return f"{p:.0f}" if 10 <= p <= 99 else f"{math.floor(p * 10) / 10:.1f}"


def _cells(ax: Any, shares: np.ndarray, where: np.ndarray, norm: Any, cmap: Any, numbers: bool) -> None:
    """Colour the cells ``where`` by ``norm`` and ``cmap``, with their percentages (white on dark colours)."""
    ax.imshow(np.ma.masked_where(~where, shares), cmap=cmap, norm=norm)
    if not numbers:
        return
    for i, j in zip(*np.nonzero(where), strict=True):
        r, g, b, _ = cmap(norm(shares[i, j]))
        color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
        ax.text(j, i, _percent(shares[i, j]), ha="center", va="center", fontsize=7, color=color)


def plot_confusion(gold: list[str], predicted: list[str], model_dir: str, test_file: str) -> bytes:
    """A PNG of the confusion matrix: gold tags in rows, predicted ones in columns, each row in percent of
    its gold tag's words (zero cells left blank).

    Correct words (the diagonal) have a blue scale of their own, errors a red one on a log scale from 0.1%
    to 100%: on a common linear scale the errors of a good model, a few percent at most, look white.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    tags, counts = confusion(gold, predicted)
    shares, n, words = row_shares(counts), len(tags), counts.sum(axis=1)
    diagonal = np.eye(n, dtype=bool)
    reds = ListedColormap(plt.get_cmap("Reds")(np.linspace(0.2, 1, 256)))  # the palest error still shows
    scales = [
        ("correct", Normalize(0, 1), plt.get_cmap("Blues"), diagonal & (words > 0)[:, None]),
        ("errors (log scale)", LogNorm(0.001, 1, clip=True), reds, ~diagonal & (counts > 0)),
    ]
    cell = min(0.5, 30 / n)  # inches: room for "99.9" up to 60 tags; more tags get smaller cells, no numbers
    fig, ax = plt.subplots(figsize=(cell * n + 4, cell * n + 2.5), layout="constrained")
    for label, norm, cmap, where in scales:
        _cells(ax, shares, where, norm, cmap, numbers=n <= 60)
        bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.035, pad=0.02)
        bar.set_label(f"{label}: % of the gold tag's words")
        bar.ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:g}")
    ax.set_xticks(range(n), tags, rotation=90)
    ax.set_yticks(range(n), [f"{t} ({w:,})" for t, w in zip(tags, words, strict=True)])
    ax.tick_params(labelsize=min(10, 50 * cell))  # a cell's height in points is 72 * cell
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold (words)")
    accuracy = np.trace(counts) / counts.sum()
    title = f"{model_dir}\non {test_file}\naccuracy {accuracy:.2%} of {counts.sum():,} words"
    ax.set_title(title, fontsize=10, wrap=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return png.getvalue()
