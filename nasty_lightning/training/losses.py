"""The training loss of one head, summed over the positions that carry its labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasty_lightning.labels.heads import IGNORE, Head
from nasty_lightning.modelling.crf import Transitions
from nasty_lightning.training.scores import label_bits


def head_loss(
    head: Head,
    scores: torch.Tensor,
    targets: torch.Tensor,
    transitions: Transitions | None = None,
    segments: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The summed loss of ``head``'s (rows, width, labels) ``scores`` against its (rows, width) ``targets``
    (``IGNORE`` where a position has none): binary cross-entropy averaged over the labels for a multi-label head
    (its targets are bit masks); with learned ``transitions``, the negative log-likelihood of the gold tag
    sequences (packed rows: by ``segments``); else cross-entropy, with ``label_smoothing``."""
    if head.multi_label:
        at = targets != IGNORE
        gold = label_bits(targets[at], len(head.vocab)).float()
        return F.binary_cross_entropy_with_logits(scores[at].float(), gold, reduction="sum") / len(head.vocab)
    if transitions is not None:  # whole tag sequences
        return transitions.nll(scores, targets, segments)
    return F.cross_entropy(
        scores.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum", label_smoothing=label_smoothing
    )
