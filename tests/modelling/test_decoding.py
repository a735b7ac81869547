"""Constrained IOB2 decoding: never an invalid transition, and the plain argmax where that is valid."""

from __future__ import annotations

import itertools

import pytest
import torch

from nasty_lightning.labels.entities import spans
from nasty_lightning.labels.heads import LabelSchema
from nasty_lightning.modelling.decoding import IOB2Decoder, IOB2Decoders, allowed_transitions, viterbi

LABELS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]


def valid(tags: list[str]) -> bool:
    """Strict IOB2: every I-X follows B-X or I-X."""
    return all(not t.startswith("I-") or (i > 0 and tags[i - 1][2:] == t[2:]) for i, t in enumerate(tags))


@pytest.mark.slow
def test_never_an_invalid_transition_on_random_scores():
    decode = IOB2Decoder(LABELS)
    generator = torch.Generator().manual_seed(0)
    for n in [1, 2, 3, 5, 8, 20] * 50:
        logits = torch.randn(n, len(LABELS), generator=generator) * 3
        tags = [LABELS[i] for i in decode(logits)]
        assert len(tags) == n and valid(tags), tags
        argmax = [LABELS[i] for i in logits.argmax(-1).tolist()]
        if valid(argmax):
            assert tags == argmax


def test_it_is_the_best_valid_sequence():
    follows, starts = allowed_transitions(LABELS)
    generator = torch.Generator().manual_seed(1)
    for _ in range(30):
        scores = torch.log_softmax(torch.randn(4, len(LABELS), generator=generator), -1)
        best = max(
            (seq for seq in itertools.product(range(len(LABELS)), repeat=4) if valid([LABELS[i] for i in seq])),
            key=lambda seq: sum(float(scores[w, t]) for w, t in enumerate(seq)),
        )
        assert viterbi(scores, follows, starts) == list(best)


def test_an_entity_the_argmax_breaks_is_repaired_whole():
    # argmax: O I-PER I-PER (no entity under strict IOB2); the best valid sequence keeps the entity
    scores = torch.log(
        torch.tensor([[0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9], [0.0, 0.0, 0.45, 0.0, 0.0, 0.55, 0.0]]) + 1e-6
    )
    tags = [LABELS[i] for i in viterbi(scores, *allowed_transitions(LABELS))]
    assert valid(tags) and spans(tags) == [("PER", 1, 2)]


def test_only_heads_of_iob2_tags_are_constrained():
    schema = LabelSchema.from_dict({"upos": ["NOUN", "VERB"], "ner": LABELS, "misc": ["O"], "xpos": ["B-X", "Y"]})
    assert [h.kind for h in schema] == ["tags", "entities", "tags", "tags"]
    decoders = IOB2Decoders(schema)
    assert list(decoders.by_head) == [1] and not IOB2Decoders(LabelSchema.from_dict({"upos": ["O", "X"]}))
    # (rows, width, labels) logits per head: row 1's words at positions 0 and 2 argmax to O I-PER
    logits = [torch.zeros(2, 3, 2), torch.zeros(2, 3, len(LABELS)), torch.zeros(2, 3, 1), torch.zeros(2, 3, 2)]
    logits[1][1, 0, LABELS.index("O")], logits[1][1, 2, LABELS.index("I-PER")] = 1.0, 2.0
    logits[1][1, 2, LABELS.index("B-PER")] = 1.5
    (head, ids), *rest = decoders.rows(logits, 1, torch.tensor([0, 2]))
    assert head == 1 and not rest and [LABELS[i] for i in ids] == ["O", "B-PER"]
