"""Pooling for heads that label sentences: by window, so packed rows pool each window apart, as padded rows do."""

from __future__ import annotations

import pytest
import torch

from nasty_lightning.data.batch import block_mask
from nasty_lightning.modelling.pooling import SentenceHead, pool


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_a_packed_row_pools_each_window_as_padded_rows_do(pooling):
    torch.manual_seed(0)
    a, b = torch.randn(4, 6), torch.randn(3, 6)
    padded = torch.stack([a, torch.cat([b, torch.full((1, 6), 99.0)])])  # the padding must not count
    separate = pool(padded, torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), pooling)
    packed_row = torch.cat([a, b, torch.full((2, 6), 99.0)])[None]  # two windows, then two padding positions
    packed = pool(packed_row, block_mask(torch.tensor([[0] * 4 + [1] * 3 + [-1] * 2])), pooling)
    assert torch.allclose(packed[0, :4], separate[0]) and torch.allclose(packed[0, 4:7], separate[1, :3])
    expected = (a[0], b[0]) if pooling == "first" else (a.mean(0), b.mean(0))
    assert torch.allclose(separate[0, 2], expected[0]) and torch.allclose(packed[0, 5], expected[1])


def test_a_sentence_head_gives_every_position_its_windows_logits():
    head = SentenceHead(6, 3, "mean")
    hidden = torch.randn(1, 5, 6)
    logits = head(hidden, block_mask(torch.tensor([[0, 0, 1, 1, 1]])))
    assert logits.shape == (1, 5, 3)
    assert torch.allclose(logits[0, 0], logits[0, 1]) and torch.allclose(logits[0, 2], logits[0, 4])
    assert torch.allclose(logits[0, 3], head.weight @ hidden[0, 2:].mean(0) + head.bias, atol=1e-6)
