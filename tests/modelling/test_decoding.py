"""Constrained IOB2 decoding: never an invalid transition, and the plain argmax where that is valid."""

from __future__ import annotations

import itertools

import torch

from nasty_lightning.labels.entities import spans
from nasty_lightning.modelling.decoding import IOB2Decoder, allowed_transitions, is_iob2_vocabulary, viterbi

LABELS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]


def valid(tags: list[str]) -> bool:
    """Strict IOB2: every I-X follows B-X or I-X."""
    return all(not t.startswith("I-") or (i > 0 and tags[i - 1][2:] == t[2:]) for i, t in enumerate(tags))


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


def test_only_iob2_vocabularies_are_constrained():
    assert is_iob2_vocabulary(LABELS) and not is_iob2_vocabulary(["NOUN", "VERB"]) and not is_iob2_vocabulary(["O"])
