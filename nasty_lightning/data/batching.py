"""Batches: which windows go together, on which device, and how they become tensors.

``SentenceBatchSampler`` replaces Lightning's ``DistributedSampler``, which pads the last shard with
repeated samples and so skews validation metrics under DDP. Here every window appears exactly once
per epoch across all ranks, and every rank gets the same number of batches (a rank that ran out
early would leave the others waiting forever in DDP's collective calls).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from nasty_lightning.data.batch import Batch
from nasty_lightning.data.encoding import IGNORE, Window
from nasty_lightning.data.sampling import draw
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import WORD_CHARS

BUCKET_BATCHES = 50
# A forward pass's cost beyond its padded positions, counted in positions (docs/benchmarks.md); what
# ``padded_batches`` weighs one more, smaller batch against the padding it saves
BATCH_OVERHEAD = 16


class SentenceBatchSampler(Sampler[list[int]]):
    """Batches of window indices for one rank: ``batch_size`` windows each, or with ``max_tokens``
    as many as fit in that many padded positions.

    Without ``shuffle`` (evaluation), windows are sorted by length. With ``bucket``, training windows of
    similar length share a batch: the shuffled order is cut into chunks of ``BUCKET_BATCHES`` batches,
    each sorted by length, and the batches are shuffled again. With ``max_tokens`` the whole (shuffled)
    order is sorted by length, so the batch boundaries, and the number of batches, are the same in every
    epoch while windows of equal length change company. The order depends only on ``seed`` and the epoch.

    With ``groups`` (each window's training file) and ``draws`` (how many windows each file gives an epoch),
    an epoch is the draw of every file (``sampling.draw``), shuffled together.

    ``resume(epoch, batches_done)`` makes the next iteration skip the batches of that epoch that
    were already trained on: a run restarted from a mid-epoch checkpoint sees the rest of the epoch
    exactly once.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        bucket: bool = False,
        max_tokens: int | None = None,
        groups: Sequence[int] | None = None,
        draws: Sequence[int] | None = None,
    ) -> None:
        if batch_size <= 0:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        if len(lengths) < world_size:
            raise UserError(f"{len(lengths)} sequences cannot be shared among {world_size} devices")
        if max_tokens is not None and max(lengths, default=0) > max_tokens:
            raise UserError(
                f"--data.max_tokens {max_tokens} is less than the longest sequence ({max(lengths)} subwords); "
                "raise it, or lower --data.max_length"
            )
        self.lengths, self.batch_size, self.shuffle, self.seed = list(lengths), batch_size, shuffle, seed
        self.rank, self.world_size, self.bucket, self.max_tokens = rank, world_size, bucket, max_tokens
        self.members = (
            None if draws is None else [[i for i, g in enumerate(groups) if g == k] for k in range(len(draws))]
        )
        self.draws, self.size = draws, len(lengths) if draws is None else sum(draws)
        self.epoch = 0
        self._skip: tuple[int, int] | None = None
        self._len = None  # with max_tokens, the batch count is the same in every epoch: count it once
        if max_tokens:
            self._len = len(self._split(self._token_batches(sorted(range(len(lengths)), key=self._key))))
        # Lightning calls ``batch_sampler.sampler.set_epoch(epoch)`` at the start of every epoch.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue ``epoch`` after its first ``batches_done`` batches (the next epoch if none are left)."""
        if batches_done >= len(self):
            self.epoch, self._skip = epoch + 1, None
        else:
            self.epoch, self._skip = epoch, (epoch, batches_done)

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        if self.draws is None:
            order = list(range(len(self.lengths)))
        else:
            order = [
                i
                for k, (members, count) in enumerate(zip(self.members, self.draws, strict=True))
                for i in draw(members, count, self.epoch, self.seed * 1_009 + k)
            ]
        if self.shuffle:
            rng.shuffle(order)
        if self.max_tokens:
            batches = self._token_batches(sorted(order, key=self._key))  # a stable sort: ties stay shuffled
        else:
            if not self.shuffle:  # evaluation: order does not matter, padding does
                order.sort(key=self._key)
            elif self.bucket:
                chunk = self.batch_size * BUCKET_BATCHES
                order = [i for c in range(0, len(order), chunk) for i in sorted(order[c : c + chunk], key=self._key)]
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return self._split(batches)[self.rank :: self.world_size]

    def _token_batches(self, order: list[int]) -> list[list[int]]:
        """Cut ``order`` (sorted by length) into batches of at most ``max_tokens`` padded positions."""
        batches: list[list[int]] = [[]]
        for i in order:
            if batches[-1] and (len(batches[-1]) + 1) * self.lengths[i] > self.max_tokens:
                batches.append([])
            batches[-1].append(i)
        return batches

    def _split(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the largest batches in two until every rank gets the same number of batches."""
        batches = list(batches)
        while len(batches) % self.world_size:
            largest = max(range(len(batches)), key=lambda b: len(batches[b]))
            batch = batches[largest]
            if len(batch) < 2:
                raise UserError(f"{len(self.lengths)} sequences cannot be shared among {self.world_size} devices")
            half = len(batch) // 2
            batches[largest : largest + 1] = [batch[:half], batch[half:]]
        return batches

    def _key(self, i: int) -> int:
        return self.lengths[i]

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is computed at the first ``next``, after Lightning's ``set_epoch``.
        batches, skip, self._skip = self.batches(), self._skip, None
        if skip is not None and skip[0] == self.epoch:
            batches = batches[skip[1] :]
        yield from batches

    def mean_labelled_words(self, windows: Sequence[Window]) -> float:
        """The mean number of labelled words (the first head's) per batch of an epoch, over all ranks, with each
        file's windows weighed by its draw: the training loss's divisor (``collate``'s ``loss_norm``)."""
        weight = [1.0] * len(windows)
        for members, count in zip(self.members or [], self.draws or [], strict=True):
            for i in members:
                weight[i] = count / len(members)
        words = sum(weight[i] * sum(ids[0] != IGNORE for ids in w.labels) for i, w in enumerate(windows))
        return max(words, 1) / (len(self) * self.world_size)

    def __len__(self) -> int:
        if self._len is not None:
            return self._len // self.world_size
        n_batches = -(-self.size // self.batch_size)
        return -(-n_batches // self.world_size)


def padded_batches(lengths: Sequence[int], batch_size: int, overhead: int = BATCH_OVERHEAD) -> list[range]:
    """Cut sequences sorted by length into batches of at most ``batch_size`` that cost least in all: each
    batch costs its padded positions (its size times its longest length) plus ``overhead``.

    A few short sentences and a long one tagged together would all be padded to the long one's length; cut
    apart, they cost what they hold. Batches of similar lengths stay whole. An exact dynamic programme over
    the order given (its best cuts are contiguous runs of it).
    """
    best, cut = [0] + [0] * len(lengths), [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        width = lengths[end - 1]
        start = max(0, end - batch_size)
        best[end], cut[end] = min((best[i] + (end - i) * width, i) for i in range(start, end))
        best[end] += overhead
    batches, end = [], len(lengths)
    while end:
        batches.append(range(cut[end], end))
        end = cut[end]
    return batches[::-1]


def fill_chars(row: torch.Tensor, chars: list[tuple[int, ...]], start: int = 0) -> None:
    """Write a window's character ids (``Window.chars``) into a row of a (width, ``WORD_CHARS``) tensor from
    ``start``."""
    if chars:  # one tensor of the window's rows, padded with 0
        row[start : start + len(chars)] = torch.tensor([ids + (0,) * (WORD_CHARS - len(ids)) for ids in chars])


def collate(windows: list[Window], pad_id: int, loss_norm: float | None = None) -> Batch:
    """Pad a batch of windows; ``word_mask`` marks each word's first subword, ``labels`` its label ids (one
    per head, in the last dimension), ``casing`` each subword's casing class.

    ``loss_norm`` (the mean number of labelled words per training batch) becomes the divisor of the
    batch's summed loss. Length-bucketed batches hold very different numbers of words; dividing each
    by its own count would give a batch of ten short words the same weight as one of four hundred, and
    training learns visibly slower than with random batches. A constant divisor weighs every word alike.
    """
    width = max(len(w.input_ids) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    casing = torch.zeros((len(windows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(windows), width), dtype=torch.long)
    labels = torch.full((len(windows), width, n_heads(windows)), IGNORE, dtype=torch.long)
    word_mask = torch.zeros((len(windows), width), dtype=torch.bool)
    chars = torch.zeros((len(windows), width, WORD_CHARS), dtype=torch.long)
    for row, w in enumerate(windows):
        fill_chars(chars[row], w.chars)
        input_ids[row, : len(w.input_ids)] = torch.tensor(w.input_ids)
        casing[row, : len(w.casing)] = torch.tensor(w.casing)
        attention_mask[row, : len(w.input_ids)] = 1
        starts = torch.tensor(w.word_starts, dtype=torch.long)
        word_mask[row, starts] = True
        labels[row, starts] = word_labels(w)
    return Batch(
        input_ids=input_ids,
        casing=casing,
        chars=chars,
        attention_mask=attention_mask,
        labels=labels,
        word_mask=word_mask,
        sentence=torch.tensor([w.sentence for w in windows]),
        first_word=torch.tensor([w.first_word for w in windows]),
        loss_norm=None if loss_norm is None else torch.tensor(loss_norm),
    )


def n_heads(windows: list[Window]) -> int:
    """How many label ids each word of these windows has (one per head)."""
    return word_labels(windows[0]).shape[1]


def word_labels(window: Window) -> torch.Tensor:
    """The window's label ids as a (words, heads) tensor."""
    return torch.tensor(window.labels, dtype=torch.long).reshape(len(window.word_starts), -1)
