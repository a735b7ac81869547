"""Learned transition scores for heads of IOB2 tags (``--model.crf``): a linear-chain CRF over each sentence's words.

A word's tag is scored by its head's logit plus a learned score for following the previous word's tag (or for
starting the sentence). Training maximises the log-probability of the gold sequence among all sequences (the
forward algorithm over the words of each sentence, or of each window of a packed row); decoding
(``decoding.viterbi``) finds the best sequence under the same scores, and IOB2's constraints on top. Both score
tables start at zero, where the CRF's best sequence is that of the words' own scores. They learn at
``TRANSITIONS_RATE_FACTOR`` times the heads' learning rate, without weight decay: at the heads' rate, in a run of
1,500 steps (``configs/ner_minilm.yaml`` on 1,600 sentences), no score moved further than 0.16 from zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from nasty_lightning.errors import UserError
from nasty_lightning.labels.heads import IGNORE, LabelSchema

TRANSITIONS_RATE_FACTOR = 10


class Transitions(nn.Module):
    """The learned scores of one head's tag sequences: ``start`` (labels) and ``follow`` (previous, next)."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(n_labels))
        self.follow = nn.Parameter(torch.zeros(n_labels, n_labels))

    def nll(self, logits: torch.Tensor, targets: torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor:
        """The summed negative log-likelihood of the gold tags of every sentence in a batch: ``logits``
        (rows, width, labels), ``targets`` (rows, width; ``IGNORE`` where no word starts), and for packed rows
        ``segments`` (rows, width), the window each position belongs to. Words left out (``IGNORE``) are skipped."""
        at = (targets != IGNORE).nonzero()  # (words, 2), in row order, then position order
        if not len(at):
            return logits.new_zeros((), dtype=torch.float32)
        rows, positions = at[:, 0], at[:, 1]
        window = segments[rows, positions] if segments is not None else torch.zeros_like(rows)
        _, lengths = torch.unique_consecutive(rows * (targets.shape[1] + 1) + window, return_counts=True)
        lengths = lengths.tolist()
        scores = pad_sequence(logits[rows, positions].float().split(lengths), batch_first=True)  # (sents, T, L)
        tags = pad_sequence(targets[rows, positions].split(lengths), batch_first=True)  # (sents, T)
        mask = pad_sequence([torch.ones(n, dtype=torch.bool, device=at.device) for n in lengths], batch_first=True)
        return (self._log_partition(scores, mask) - self._gold_score(scores, tags, mask)).sum()

    def _gold_score(self, scores: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emitted = scores.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (sents, T)
        followed = self.follow[tags[:, :-1], tags[:, 1:]]  # (sents, T - 1)
        return self.start[tags[:, 0]] + (emitted * mask).sum(-1) + (followed * mask[:, 1:]).sum(-1)

    def _log_partition(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        alpha = self.start + scores[:, 0]  # (sents, labels)
        for t in range(1, scores.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + self.follow, dim=1) + scores[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha, dim=-1)


def transitions_from_meta(meta: dict[str, Any], schema: LabelSchema, path: str) -> dict[str, Transitions]:
    """The transition scores of a model directory's ``META_FILE`` (``path``; read and checked by
    ``model_dir.read_meta``), by column, each for a head of IOB2 tags with as many labels."""
    learned = {}
    for column, scores in meta.get("transitions", {}).items():
        head = next((head for head in schema if head.column == column), None)
        if head is None or not head.is_entities or len(scores["start"]) != len(head.vocab):
            raise UserError(f"{path}: 'transitions' of {column!r} fit no head of IOB2 tags of the model")
        transitions = Transitions(len(head.vocab))
        with torch.no_grad():
            transitions.start.copy_(torch.tensor(scores["start"]))
            transitions.follow.copy_(torch.tensor(scores["follow"]))
        learned[column] = transitions.requires_grad_(False)
    return learned
