"""Batches: every window once per epoch, alone and across DDP ranks; deterministic per seed."""

from __future__ import annotations

import random

import pytest
import torch

from nasty_lightning.batching import SentenceBatchSampler, collate
from nasty_lightning.encoding import IGNORE, Window

_rng = random.Random(0)
LENGTHS = [_rng.randint(3, 60) for _ in range(203)]


def epoch(world_size: int, shuffle: bool = True, seed: int = 1, n: int = 0, **kw) -> list[list[list[int]]]:
    samplers = [SentenceBatchSampler(LENGTHS, 16, shuffle, seed, rank, world_size, **kw) for rank in range(world_size)]
    for s in samplers:
        s.sampler.set_epoch(n)  # what Lightning calls at each epoch start
    return [list(s) for s in samplers]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_window_once_and_equal_batch_counts(world_size, shuffle):
    ranks = epoch(world_size, shuffle)
    seen = sorted(i for batches in ranks for batch in batches for i in batch)
    assert seen == list(range(len(LENGTHS)))
    assert len({len(batches) for batches in ranks}) == 1
    sampler = SentenceBatchSampler(LENGTHS, 16, shuffle, 1, 0, world_size)
    assert len(sampler) == len(ranks[0])


def test_same_seed_same_order_new_epoch_new_order():
    assert epoch(2) == epoch(2)
    assert epoch(2) != epoch(2, seed=2)
    assert epoch(2, n=0) != epoch(2, n=1)


def test_bucketing_reduces_padding():
    def padding(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)

    assert padding(epoch(1, bucket=True)[0]) < padding(epoch(1, bucket=False)[0]) / 3


def test_too_few_windows_for_the_devices():
    with pytest.raises(Exception, match="cannot be shared among 4 devices"):
        SentenceBatchSampler([5, 5, 5], 2, False, 0, 0, 4)


def test_collate_places_labels_on_word_starts():
    batch = collate([Window([2, 7, 8, 9, 3], [1, 3], [4, IGNORE], 0, 0), Window([2, 5, 3], [1], [1], 1, 0)], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 8, 9, 3], [2, 5, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 4, IGNORE, IGNORE, IGNORE], [IGNORE, 1, IGNORE, IGNORE, IGNORE]]
    assert batch["word_mask"].tolist() == [[False, True, False, True, False], [False, True, False, False, False]]
    assert torch.equal(batch["sentence"], torch.tensor([0, 1]))
    assert "loss_norm" not in batch
    assert float(collate([Window([2, 5, 3], [1], [1], 1, 0)], pad_id=0, loss_norm=12.5)["loss_norm"]) == 12.5
