"""Batches: every window once per epoch, alone and across DDP ranks; deterministic per seed."""

from __future__ import annotations

import random

import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from nasty_lightning.data.batch import Batch, Packing
from nasty_lightning.data.batching import SentenceBatchSampler, collate, padded_batches
from nasty_lightning.data.encoding import IGNORE, Window
from nasty_lightning.data.packing import collate_packed

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


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_token_budget_batches(world_size):
    for n in range(3):  # the batch count is the same in every epoch, and what len() says
        ranks = epoch(world_size, n=n, max_tokens=200)
        seen = sorted(i for batches in ranks for batch in batches for i in batch)
        assert seen == list(range(len(LENGTHS)))
        assert {len(b) for b in ranks} == {
            len(SentenceBatchSampler(LENGTHS, 16, True, 1, 0, world_size, max_tokens=200))
        }
        assert all(len(batch) * max(LENGTHS[i] for i in batch) <= 200 for b in ranks for batch in b)
    sizes = [len(batch) for batch in epoch(1, max_tokens=200)[0]]
    assert max(sizes) > 16 > min(sizes)  # short sentences go many to a batch, long ones few
    assert epoch(2, max_tokens=200) == epoch(2, max_tokens=200) != epoch(2, n=1, max_tokens=200)


def test_token_budget_below_the_longest_sequence():
    with pytest.raises(Exception, match="max_tokens 50 is less than the longest sequence"):
        SentenceBatchSampler(LENGTHS, 16, True, max_tokens=50)


@pytest.mark.parametrize("max_tokens", [None, 300])
def test_resume_skips_the_batches_already_seen(max_tokens):
    sampler = SentenceBatchSampler(LENGTHS, 16, True, seed=1, max_tokens=max_tokens)
    sampler.set_epoch(2)
    whole_epoch = list(sampler)
    resumed = SentenceBatchSampler(LENGTHS, 16, True, seed=1, max_tokens=max_tokens)
    resumed.resume(epoch=2, batches_done=5)
    resumed.set_epoch(2)  # as Lightning does before iterating
    assert list(resumed) == whole_epoch[5:]
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(resumed)  # the next epoch is whole
    finished = SentenceBatchSampler(LENGTHS, 16, True, seed=1, max_tokens=max_tokens)
    finished.resume(epoch=2, batches_done=len(whole_epoch))  # saved at the end of the epoch
    assert finished.epoch == 3 and len(list(finished)) == len(finished)


def test_too_few_windows_for_the_devices():
    with pytest.raises(Exception, match="cannot be shared among 4 devices"):
        SentenceBatchSampler([5, 5, 5], 2, False, 0, 0, 4)


def test_collate_places_labels_on_word_starts():
    windows = [
        Window([2, 7, 8, 9, 3], [1, 3], [4, IGNORE], 0, 0, [0, 1, 1, 2, 0]),
        Window([2, 5, 3], [1], [1], 1, 0, [0, 3, 0]),
    ]
    batch = collate(windows, pad_id=0)
    assert batch.input_ids.tolist() == [[2, 7, 8, 9, 3], [2, 5, 3, 0, 0]]
    assert batch.attention_mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch.labels[..., 0].tolist() == [
        [IGNORE, 4, IGNORE, IGNORE, IGNORE],
        [IGNORE, 1, IGNORE, IGNORE, IGNORE],
    ]
    assert batch.word_mask.tolist() == [[False, True, False, True, False], [False, True, False, False, False]]
    assert batch.casing.tolist() == [[0, 1, 1, 2, 0], [0, 3, 0, 0, 0]]  # padding has no casing
    assert torch.equal(batch.sentence, torch.tensor([0, 1])) and torch.equal(batch.first_word, torch.tensor([0, 0]))
    assert batch.loss_norm is None and batch.packing is None
    assert float(collate(windows[1:], pad_id=0, loss_norm=12.5).loss_norm) == 12.5
    # the network's inputs: the padding mask, no positions
    ids, mask, casing, positions = batch.encoder_inputs(position_offset=2)
    assert ids is batch.input_ids and mask is batch.attention_mask and casing is batch.casing and positions is None


@pytest.mark.parametrize("draws", [None, [2, 4]])
def test_the_loss_divisor_is_an_epochs_mean_of_labelled_words_per_batch(draws):
    # file 0: four windows of two labelled words (and an unlabelled one); file 1: two of three
    windows = [Window([2, 5, 6, 7, 3], [1, 2, 3], [(4,), (IGNORE,), (5,)], i, 0, [0] * 5) for i in range(4)]
    windows += [Window([2, 5, 6, 7, 3], [1, 2, 3], [(4,), (5,), (6,)], 4 + i, 0, [0] * 5) for i in range(2)]
    groups = [0, 0, 0, 0, 1, 1]
    sampler = SentenceBatchSampler([5] * 6, 2, True, seed=3, groups=groups if draws else None, draws=draws)
    batches = list(sampler)
    words = [sum(ids[0] != IGNORE for i in batch for ids in windows[i].labels) for batch in batches]
    assert sampler.mean_labelled_words(windows) == pytest.approx(sum(words) / len(batches))
    assert sampler.mean_labelled_words(windows) == pytest.approx(16 / 3 if draws else 14 / 3)


def test_a_batch_moves_to_a_device_whole():
    batch = collate_packed([Window([2, 5, 3], [1], [1], 0, 0, [0, 3, 0]), Window([2, 3], [0], [2], 1, 0, [0, 0])], 0)
    moved = batch.to("meta")
    assert type(moved) is Batch and type(moved.packing) is Packing and moved.attention_mask is None
    assert all(getattr(moved, f).device.type == "meta" for f in ("input_ids", "casing", "labels"))
    assert moved.packing.segments.device.type == "meta" and batch.input_ids.device.type == "cpu"
    # Lightning moves it by its ``to``, as any object that has one
    assert move_data_to_device(batch, torch.device("meta")).packing.position_ids.device.type == "meta"


def _cost(lengths, batches, overhead):
    return sum(overhead + len(b) * lengths[b.stop - 1] for b in batches)


def _all_cuts(n, batch_size):
    """Every way to cut 0..n-1 into contiguous batches of at most ``batch_size``."""
    if n == 0:
        yield []
        return
    for size in range(1, min(batch_size, n) + 1):
        for rest in _all_cuts(n - size, batch_size):
            yield [range(0, size)] + [range(r.start + size, r.stop + size) for r in rest]


def test_padded_batches_are_the_cheapest_cut():
    rng = random.Random(3)
    for _ in range(40):
        lengths = sorted(rng.randint(2, 80) for _ in range(rng.randint(1, 9)))
        batch_size, overhead = rng.randint(1, 5), rng.choice([0, 4, 16, 64])
        batches = padded_batches(lengths, batch_size, overhead)
        assert [i for b in batches for i in b] == list(range(len(lengths)))
        assert all(0 < len(b) <= batch_size for b in batches)
        assert _cost(lengths, batches, overhead) == min(
            _cost(lengths, c, overhead) for c in _all_cuts(len(lengths), batch_size)
        )


def test_padded_batches_split_short_from_long_and_keep_equal_lengths_whole():
    mixed = [8, 12, 15, 20, 25, 30, 45, 70]  # what eight clients of a server may send together
    batches = padded_batches(mixed, 64, overhead=16)
    assert len(batches) > 1
    assert _cost(mixed, batches, 16) < _cost(mixed, [range(8)], 16)
    assert [len(b) for b in padded_batches([20] * 130, 64, overhead=16)] == [2, 64, 64]
    assert padded_batches([], 64) == []
