"""Named entities from IOB2 tags, and their exact-span scores.

An entity is a ``B-X`` tag followed by any run of ``I-X`` of the same type; that is all strict IOB2
allows (``seqeval``'s strict mode, the usual CoNLL scoring). An ``I-X`` that follows ``O`` or a tag
of another type starts no entity: such a prediction finds nothing, so the gold entity there counts
as missed. A predicted entity is right only when its type, first and last word are all the gold's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

IOB2_TAG = re.compile(r"O|[BI]-.+")

Span = tuple[str, int, int]  # type, first word, last word + 1


def is_iob2(tags: Iterable[str]) -> bool:
    """Whether every tag is ``O``, ``B-X`` or ``I-X``, and some tag is not ``O``."""
    seen = set(tags)
    return bool(seen - {"O"}) and all(IOB2_TAG.fullmatch(t) for t in seen)


def spans(tags: Sequence[str]) -> list[Span]:
    """The entities of one sentence's tags, by strict IOB2."""
    found, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last entity
        if start is not None and tag != f"I-{kind}":
            found.append((kind, start, i))
            start = None
        if tag.startswith("B-"):
            start, kind = i, tag[2:]
    return found


def entity_counts(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """By entity type, over sentences of tags: the gold entities, the predicted ones, and the predicted ones
    found among the gold (exact spans). Every entity score (``entity_scores``, training's ``EntityF1``) counts here."""
    gold_n, pred_n, found_n = Counter(), Counter(), Counter()
    for gold_tags, pred_tags in zip(gold, predicted, strict=True):
        gold_spans, pred_spans = set(spans(gold_tags)), set(spans(pred_tags))
        gold_n.update(kind for kind, _, _ in gold_spans)
        pred_n.update(kind for kind, _, _ in pred_spans)
        found_n.update(kind for kind, _, _ in gold_spans & pred_spans)
    return gold_n, pred_n, found_n


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro precision, recall and F1 over exact entity spans, and the same per entity type, with counts."""
    gold_n, pred_n, right_n = entity_counts(gold, predicted)
    per_type = {kind: _prf(right_n[kind], pred_n[kind], gold_n[kind]) for kind in sorted(gold_n | pred_n)}
    return {**_prf(sum(right_n.values()), sum(pred_n.values()), sum(gold_n.values())), "per_type": per_type}


def _prf(right: int, predicted: int, gold: int) -> dict[str, Any]:
    precision = right / predicted if predicted else 0.0
    recall = right / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": gold, "predicted": predicted, "found": right}


def entity_report(result: dict[str, Any]) -> str:
    """The entity scores as ``eval`` prints them."""
    lines = [
        f"entities: precision {result['precision']:.4f}, recall {result['recall']:.4f}, f1 {result['f1']:.4f} "
        f"({result['found']:,} of {result['gold']:,} gold entities found, {result['predicted']:,} predicted)",
        "",
        f"{'type':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'gold':>9} {'predicted':>9}",
    ]
    for kind, m in result["per_type"].items():
        lines.append(
            f"{kind:<12} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {m['gold']:>9,} "
            f"{m['predicted']:>9,}"
        )
    return "\n".join(lines)
