"""What training sees of its files: a seeded sample of sentences, per-file sampling weights, augmented copies.

All three are pure functions of their arguments and a seed, so two runs, or two processes of one run, draw the
same sentences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

AUGMENT_RATE = 0.2  # the chance that an augmented copy replaces a word


def sample(n: int, k: int, seed: int) -> list[int]:
    """``k`` of the indices ``0..n-1``, in ascending order, drawn with ``seed``. For the same seed a smaller
    sample is part of a larger one (the first ``k`` of one seeded shuffle), so learning curves are nested."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[:k])


def temperature_draws(sizes: Sequence[int], temperature: float) -> list[int]:
    """Sentences drawn from each file per epoch: the epoch keeps its size (the sum of ``sizes``), shared in
    proportion to ``size ** (1 / temperature)``. Temperature 1 keeps every file's size; higher ones move
    toward equal shares, so a small file is seen more often and a large one less (multilingual training's
    temperature sampling)."""
    weights = [n ** (1 / temperature) for n in sizes]
    total = sum(sizes)
    return [max(1, round(total * w / sum(weights))) for w in weights]


def draw(members: Sequence[int], count: int, epoch: int, seed: int) -> list[int]:
    """``count`` of ``members`` for ``epoch``: the epoch's slice of an endless stream of seeded shuffles of
    ``members``, so an undersampled file shows every member over the epochs before repeating one, and an
    oversampled file repeats each member as evenly as possible."""
    start, out = epoch * count, []
    cycle, offset = divmod(start, len(members))
    while len(out) < count:
        order = list(members)
        random.Random(seed * 100_003 + cycle).shuffle(order)
        out.extend(order[offset : offset + count - len(out)])
        cycle, offset = cycle + 1, 0
    return out


def augment(
    words: Sequence[Sequence[str]], labels: Sequence[Sequence[tuple[int, ...]]], copies: int, seed: int
) -> tuple[list[list[str]], list[list[tuple[int, ...]]]]:
    """``copies`` new versions of every sentence, each word replaced (with chance ``AUGMENT_RATE``) by another
    word seen with exactly the same labels (every head's) somewhere in ``words``. Labels never change; only
    forms do."""
    seen: dict[tuple[int, ...], dict[str, None]] = {}
    for sentence, ids in zip(words, labels, strict=True):
        for word, label in zip(sentence, ids, strict=True):
            seen.setdefault(label, {})[word] = None
    pools = {label: list(forms) for label, forms in seen.items()}
    rng = random.Random(seed)
    new_words, new_labels = [], []
    for _ in range(copies):
        for sentence, ids in zip(words, labels, strict=True):
            new_words.append(
                [
                    rng.choice(pools[label]) if rng.random() < AUGMENT_RATE else word
                    for word, label in zip(sentence, ids, strict=True)
                ]
            )
            new_labels.append(list(ids))
    return new_words, new_labels
