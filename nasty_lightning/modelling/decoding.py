"""Tag sequences that are valid IOB2 by construction: Viterbi decoding under IOB2's transitions.

Taking each word's best tag can give ``O I-PER`` or ``B-LOC I-ORG``, which strict IOB2 reads as no
entity. Here the sentence's tags are the highest-scoring sequence (sum of the words' log-probabilities)
among those IOB2 allows: ``I-X`` only after ``B-X`` or ``I-X``, never first. Where the best tag of
every word already forms a valid sequence, that is the result: the constraint only changes invalid ones.
A head trained with learned transition scores (``crf.Transitions``) adds them to its words' scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from nasty_lightning.labels.heads import LabelSchema
from nasty_lightning.modelling.crf import Transitions


def allowed_transitions(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tag may follow which ((labels, labels), previous by next), and which may start a sentence."""
    n = len(labels)
    follows = torch.ones(n, n, dtype=torch.bool)
    starts = torch.ones(n, dtype=torch.bool)
    for j, tag in enumerate(labels):
        if tag.startswith("I-"):
            kind = tag[2:]
            starts[j] = False
            follows[:, j] = torch.tensor([prev in (f"B-{kind}", f"I-{kind}") for prev in labels])
    return follows, starts


def viterbi(
    scores: torch.Tensor, follows: torch.Tensor, starts: torch.Tensor, learned: Transitions | None = None
) -> list[int]:
    """The best allowed tag sequence for one sentence's (words, labels) scores (log-probabilities, or with
    ``learned`` transition scores the logits they were trained with)."""
    if scores.shape[0] == 0:
        return []
    scores = scores.float().cpu()
    forbidden = torch.tensor(float("-inf"))
    start = follow = torch.tensor(0.0)
    if learned is not None:
        start, follow = (t.detach().float().cpu() for t in (learned.start, learned.follow))
    penalty = torch.where(follows, follow, forbidden)  # (previous, next)
    best = torch.where(starts, scores[0] + start, forbidden)
    back = []
    for word in scores[1:]:
        candidates = best[:, None] + penalty  # (previous, next)
        best, previous = candidates.max(dim=0)
        best = best + word
        back.append(previous)
    path = [int(best.argmax())]
    for previous in reversed(back):
        path.append(int(previous[path[-1]]))
    return path[::-1]


class IOB2Decoder:
    """Constrained decoding for one IOB2 label vocabulary."""

    def __init__(self, labels: list[str], learned: Transitions | None = None) -> None:
        self.follows, self.starts = allowed_transitions(labels)
        self.learned = learned  # read at every call: training updates it

    def __call__(self, logits: torch.Tensor) -> list[int]:
        """Tag ids of one sentence's (words, labels) logits."""
        if self.learned is not None:
            return viterbi(logits, self.follows, self.starts, self.learned)
        return viterbi(torch.log_softmax(logits.float(), dim=-1), self.follows, self.starts)


class IOB2Decoders:
    """The constrained decoders of a model's heads of IOB2 tags (``Head.is_entities``), each built once, with the
    learned transition scores of those that have them (by column)."""

    def __init__(self, schema: LabelSchema, learned: Mapping[str, Transitions] | None = None) -> None:
        learned = learned or {}
        self.by_head = {
            h: IOB2Decoder(list(head.vocab.labels), learned.get(head.column))
            for h, head in enumerate(schema)
            if head.is_entities
        }

    def __bool__(self) -> bool:
        return bool(self.by_head)

    def rows(self, logits: Sequence[torch.Tensor], row: int, at: torch.Tensor) -> Iterator[tuple[int, list[int]]]:
        """Each IOB2 head's best valid tag ids for the words at positions ``at`` of ``row`` of a batch's ``logits``
        (one (rows, width, labels) tensor per head), as (head, ids)."""
        for h, decode in self.by_head.items():
            yield h, decode(logits[h][row, at])
