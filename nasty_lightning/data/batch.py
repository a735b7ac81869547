"""The batch: what ``collate`` and ``pack`` make of windows, and what the network, training and tagging read.

Rows are padded to the longest window (``attention_mask``), or hold several windows each (``packing``: every
window with its own positions, attending only to itself). Lightning moves a batch to the device by its ``to``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


def block_mask(segments: torch.Tensor) -> torch.Tensor:
    """The (rows, 1, width, width) attention mask of packed rows: True where a position may attend."""
    return (segments[:, None, :, None] == segments[:, None, None, :]).contiguous()


class _Tensors:
    """A dataclass of tensors (``None`` where absent) that moves to a device whole."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> _Tensors:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{k: v if v is None else v.to(device, non_blocking=non_blocking) for k, v in moved.items()})


@dataclass
class Packing(_Tensors):
    """Windows packed into rows (``packing.pack``)."""

    position_ids: torch.Tensor  # (rows, width): every window's positions from 0
    segments: torch.Tensor  # (rows, width): the window's number within its row, -1 on padding


@dataclass
class Batch(_Tensors):
    """Windows as tensors of (rows, width), one row per window unless ``packing``."""

    input_ids: torch.Tensor
    casing: torch.Tensor  # each subword's casing class (0: special tokens and padding)
    attention_mask: torch.Tensor | None = None  # padded rows: 1 on subwords, 0 on padding
    labels: torch.Tensor | None = None  # (rows, width, heads): each word's label ids on its first subword
    word_mask: torch.Tensor | None = None  # padded rows: each word's first subword
    sentence: torch.Tensor | None = None  # padded rows: each row's sentence
    first_word: torch.Tensor | None = None  # padded rows: the sentence's word the row's window starts at
    loss_norm: torch.Tensor | None = None  # training: the divisor of the summed loss (``batching.collate``)
    packing: Packing | None = None
    chars: torch.Tensor | None = None  # (rows, width, WORD_CHARS): each subword's word's character ids, 0 after

    def encoder_inputs(self, position_offset: int) -> tuple[torch.Tensor, ...]:
        """What the network takes (``network.head_logits``): input ids, the attention mask (the padding mask, or
        packed rows' ``block_mask``), casing classes, and packed rows' position ids counted from
        ``position_offset`` (``packing.position_offset``; None for padded rows)."""
        if self.packing is None:
            return self.input_ids, self.attention_mask, self.casing, None
        packing = self.packing
        return self.input_ids, block_mask(packing.segments), self.casing, packing.position_ids + position_offset
