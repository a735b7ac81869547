"""Validation and test scores as torchmetrics metrics: sums of counts, so exact under DDP.

Every head gets its word accuracy; a model predicting two of UPOS, XPOS and FEATS gets AllTags; a head of
IOB2 tags (NER) gets precision, recall and F1 over exact entity spans (``nasty_lightning.labels.entities``); a head
that labels sentences gets accuracy over its windows (one per sentence but for long texts) and macro-F1 (the mean
of the F1 of every class in the gold labels or the predictions, a label training never saw included). A
multi-label head's accuracy is exact match (its label ids are bit masks of label sets, ``Head.encode``), with
micro- and macro-F1 over its labels at threshold 0.5; ``ThresholdCounts`` chooses each label's threshold.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassF1Score, MultilabelF1Score

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


THRESHOLDS = torch.arange(1, 20) / 20  # the thresholds ThresholdCounts tries: 0.05, 0.10, ..., 0.95


def label_bits(masks: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Bit masks of label sets as 0/1 vectors: (..., n_labels)."""
    return masks.unsqueeze(-1) >> torch.arange(n_labels, device=masks.device) & 1


def bit_masks(chosen: torch.Tensor) -> torch.Tensor:
    """0/1 (or boolean) vectors of label sets, (..., n_labels), as bit masks (``Head.encode``'s label ids)."""
    return (chosen.long() << torch.arange(chosen.shape[-1], device=chosen.device)).sum(-1)


class ThresholdCounts(Metric):
    """For every label of a multi-label head, its true and false positives and false negatives at each of
    ``THRESHOLDS``; ``compute`` gives each label the threshold of its best F1 (nearest 0.5 among equals; 0.5
    where it has no F1 above 0)."""

    full_state_update = False

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        for name in ("true_pos", "false_pos", "false_neg"):
            self.add_state(name, default=torch.zeros(n_labels, len(THRESHOLDS), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, gold: torch.Tensor) -> None:
        """``probs``: (texts, labels) probabilities; ``gold``: (texts, labels) 0/1."""
        chosen = probs.unsqueeze(-1) >= THRESHOLDS.to(probs.device)  # (texts, labels, thresholds)
        gold = gold.bool().unsqueeze(-1)
        self.true_pos += (chosen & gold).sum(0)
        self.false_pos += (chosen & ~gold).sum(0)
        self.false_neg += (~chosen & gold).sum(0)

    def compute(self) -> torch.Tensor:
        f1 = 2 * self.true_pos / (2 * self.true_pos + self.false_pos + self.false_neg).clamp(min=1)
        thresholds = THRESHOLDS.to(f1.device)
        top = f1.amax(-1, keepdim=True)
        best = torch.where(f1 == top, (thresholds - 0.5).abs(), torch.inf).argmin(-1)  # of equal F1, nearest 0.5
        return torch.where(top.squeeze(-1) > 0, thresholds[best], torch.tensor(0.5, device=f1.device))


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
        # per head that labels sentences, by its index: macro-F1 over its labels and the unseen id; multi-label,
        # over its labels, and micro-F1
        self.sizes = {h: len(schema[h].vocab) for h in schema.sentence_heads if schema[h].multi_label}
        self.macro_f1 = nn.ModuleDict(
            {
                str(h): MultilabelF1Score(self.sizes[h], average="macro")
                if h in self.sizes
                else MulticlassF1Score(len(schema[h].vocab) + 1, average="macro", ignore_index=IGNORE)
                for h in schema.sentence_heads
            }
        )
        self.micro_f1 = nn.ModuleDict({str(h): MultilabelF1Score(n, average="micro") for h, n in self.sizes.items()})
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
        for h, metric in [*self.macro_f1.items(), *self.micro_f1.items()]:
            pred, gold = preds[..., int(h)].flatten(), targets[..., int(h)].flatten()
            if int(h) in self.sizes:  # the label sets of the texts, as 0/1 vectors
                at = gold != IGNORE
                pred, gold = (label_bits(x[at], self.sizes[int(h)]) for x in (pred, gold))
            metric.update(pred, gold)

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
        for h, metric in self.micro_f1.items():
            metrics[f"{prefix}_micro_f1" if h == "0" else f"{prefix}_micro_f1_{self.columns[int(h)]}"] = metric
        return metrics


def entity_types(labels: list[str]) -> list[str]:
    """The entity types of IOB2 labels, sorted."""
    return sorted({label[2:] for label in labels if label[:2] in ("B-", "I-")})
