"""Validation and test scores as torchmetrics metrics: sums of counts, so exact under DDP.

Every head gets its word accuracy; a model predicting two of UPOS, XPOS and FEATS gets AllTags; a head of
IOB2 tags (NER) gets precision, recall and F1 over exact entity spans (``nasty_lightning.labels.entities``); a head
that labels sentences gets accuracy over its windows (one per sentence but for long texts) and macro-F1 (the mean
of the F1 of every class in the gold labels or the predictions, a label training never saw included).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassF1Score

from nasty_lightning.labels.entities import entity_counts
from nasty_lightning.labels.heads import ALLTAGS, IGNORE, LabelSchema, metric_name, tag_columns


class WordAccuracy(Metric):
    """The share of counted words that are right."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, right: torch.Tensor, counted: torch.Tensor) -> None:
        self.correct += (right & counted).sum()
        self.total += counted.sum()

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class EntityF1(Metric):
    """F1 over exact entity spans of IOB2 tags (strict IOB2), micro over all types or of one ``kind``."""

    full_state_update = False

    def __init__(self, labels: list[str], kind: str | None = None) -> None:
        super().__init__()
        self.labels, self.kind = labels, kind
        for name in ("found", "predicted", "gold"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """``preds`` and ``targets``: (rows, width) label ids; each row's labelled words are one sequence.
        A label training never saw (an id past the vocabulary) counts as ``O``-free noise: it is no entity."""
        pred, gold = [], []
        for pred_row, gold_row in zip(preds.tolist(), targets.tolist(), strict=True):
            words = [(p, g) for p, g in zip(pred_row, gold_row, strict=True) if g != IGNORE]
            pred.append([self._tag(p) for p, _ in words])
            gold.append([self._tag(g) for _, g in words])
        counts = entity_counts(gold, pred)
        gold_n, pred_n, found_n = (sum(c.values()) if self.kind is None else c[self.kind] for c in counts)
        self.found += found_n
        self.predicted += pred_n
        self.gold += gold_n

    def _tag(self, label_id: int) -> str:
        return self.labels[label_id] if label_id < len(self.labels) else "O"

    def compute(self) -> torch.Tensor:
        return 2 * self.found / (self.predicted + self.gold).clamp(min=1)


class Scores(nn.Module):
    """The metrics of one split: every head's accuracy, AllTags, and entity F1 of IOB2 heads."""

    def __init__(self, schema: LabelSchema, entities: bool = True) -> None:
        """``entities``: entity F1 of the heads of IOB2 tags too (not while training: it costs per batch)."""
        super().__init__()
        self.columns = schema.columns
        self.tagged = [self.columns.index(c) for c in tag_columns(self.columns)]
        self.accuracy = nn.ModuleList(WordAccuracy() for _ in self.columns)
        self.alltags = WordAccuracy() if self.tagged else None
        # per head that labels sentences, by its index: macro-F1 over its labels and the unseen id
        self.macro_f1 = nn.ModuleDict(
            {
                str(h): MulticlassF1Score(len(schema[h].vocab) + 1, average="macro", ignore_index=IGNORE)
                for h in schema.sentence_heads
            }
        )
        # per head of IOB2 tags, by its index: micro F1, then one per entity type
        self.entities = nn.ModuleDict(
            {
                str(h): nn.ModuleList([EntityF1(labels), *(EntityF1(labels, kind) for kind in entity_types(labels))])
                for h, labels in (
                    (h, list(head.vocab.labels)) for h, head in enumerate(schema) if head.is_entities and entities
                )
            }
        )

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """``preds`` and ``targets`` are (rows, width, heads); unseen labels have ids no head predicts."""
        right, counted = preds == targets, targets != IGNORE
        # forward, not update: a metric logged per step reports the value of its last forward call
        for h, metric in enumerate(self.accuracy):
            metric(right[..., h], counted[..., h])
        if self.alltags is not None:
            self.alltags(right[..., self.tagged].all(-1), counted[..., self.tagged].all(-1))
        for h, per_type in self.entities.items():
            for metric in per_type:
                metric.update(preds[..., int(h)], targets[..., int(h)])
        for h, metric in self.macro_f1.items():
            metric.update(preds[..., int(h)].flatten(), targets[..., int(h)].flatten())

    def named(self, prefix: str) -> dict[str, Metric]:
        metrics = {metric_name(self.columns, c, prefix): m for c, m in zip(self.columns, self.accuracy, strict=True)}
        if self.alltags is not None:
            metrics[f"{prefix}_{ALLTAGS}"] = self.alltags
        for h, (micro, *per_type) in self.entities.items():
            name = f"{prefix}_f1" if h == "0" else f"{prefix}_f1_{self.columns[int(h)]}"
            metrics[name] = micro
            metrics.update({f"{name}_{m.kind}": m for m in per_type})
        for h, metric in self.macro_f1.items():
            metrics[f"{prefix}_macro_f1" if h == "0" else f"{prefix}_macro_f1_{self.columns[int(h)]}"] = metric
        return metrics


def entity_types(labels: list[str]) -> list[str]:
    """The entity types of IOB2 labels, sorted."""
    return sorted({label[2:] for label in labels if label[:2] in ("B-", "I-")})
