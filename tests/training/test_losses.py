"""Each head's training loss: what it counts and what it leaves out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasty_lightning.labels.heads import IGNORE, LabelSchema
from nasty_lightning.training.losses import head_loss


def test_a_word_head_sums_cross_entropy_over_labelled_positions_only():
    head = LabelSchema.of({"upos": ["NOUN", "VERB", "ADJ"]})[0]
    scores = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[IGNORE, 0, 2, IGNORE], [1, IGNORE, IGNORE, IGNORE]])
    at = targets != IGNORE
    expected = F.cross_entropy(scores[at], targets[at], reduction="sum")
    assert head_loss(head, scores, targets) == pytest.approx(expected.item())
    scores[~at] = 100.0  # what unlabelled positions score changes nothing
    assert head_loss(head, scores, targets) == pytest.approx(expected.item())
    assert head_loss(head, scores, targets, label_smoothing=0.1) > expected


def test_a_multi_label_head_averages_binary_cross_entropy_over_its_labels():
    head = LabelSchema.of({"topic": ["a", "b", "c"]}, multi_label=True)[0]
    scores = torch.tensor([[[2.0, -1.0, 0.5]], [[0.0, 0.0, 0.0]]])
    targets = torch.tensor([[0b101], [IGNORE]])  # the first text has labels a and c; the second none given
    gold = torch.tensor([[1.0, 0.0, 1.0]])
    expected = F.binary_cross_entropy_with_logits(scores[0], gold, reduction="sum") / 3
    assert head_loss(head, scores, targets) == pytest.approx(expected.item())
