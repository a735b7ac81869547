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


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_a_sequence_classifier_labels_every_window_of_a_packed_row_as_its_own_row(tiny_bert, pooling):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nasty_lightning.data.batching import collate
    from nasty_lightning.data.encoding import encode
    from nasty_lightning.data.packing import pack, position_offset
    from nasty_lightning.modelling.network import head_logits
    from nasty_lightning.modelling.pooling import pools_by_window

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    assert pools_by_window(model, pooling)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    windows = encode(
        [["The", "cat", "sat", "."], ["A", "dog", "barked"], ["on", "the", "mat", "near", "Paris"]], tokenizer, 32
    )
    padded = collate(windows, tokenizer.pad_token_id)
    packed, places = pack(windows, tokenizer.pad_token_id)
    assert packed.input_ids.shape[0] < len(windows)  # several windows share a row
    with torch.no_grad():
        (one,) = head_logits(model, [], None, *padded.encoder_inputs(0), pooling=pooling)
        (many,) = head_logits(model, [], None, *packed.encoder_inputs(position_offset(model)), pooling=pooling)
    for w, (row, start) in enumerate(places):
        assert torch.allclose(many[row, start], one[w, 0], atol=1e-5)
    if pooling == "first":  # padded rows are the model's own logits, as plain transformers gives them
        assert torch.allclose(
            one[:, 0],
            model(**{"input_ids": padded.input_ids, "attention_mask": padded.attention_mask}).logits,
            atol=1e-6,
        )
