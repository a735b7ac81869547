"""The cheaper CPU dropout: the same rate, seeded, and the same outputs as the model's own attention."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForTokenClassification
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from nasty_lightning.data.packing import block_mask
from nasty_lightning.modelling.dropout import ATTENTION, Dropout, attention, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_drops_at_the_rate_asked(p):
    mask = keep_mask((1000, 1001), p)
    assert mask.shape == (1000, 1001) and mask.dtype == torch.bool
    assert abs((~mask).float().mean().item() - p) < 0.002


def test_keep_mask_follows_the_seed():
    torch.manual_seed(3)
    a = keep_mask((64, 33), 0.1)
    b = keep_mask((64, 33), 0.1)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((64, 33), 0.1), a) and not torch.equal(a, b)


def test_dropout_module_keeps_the_mean_and_is_the_identity_in_eval():
    layer = Dropout(0.25)
    x = torch.ones(500, 400)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - 0.25) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert layer.eval()(x) is x


def _padding_mask(lengths: list[int], width: int) -> torch.Tensor:
    keys = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return keys[:, None, None, :].expand(-1, 1, width, -1)


@pytest.mark.parametrize("mask", ["none", "bool", "additive"])
def test_attention_is_sdpa_where_nothing_is_dropped(mask):
    """With a dropout rate too small to drop anything, the product is SDPA's (the dropout path is exact)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    attend = {
        "none": None,
        "bool": block_mask(torch.tensor([[0] * 4 + [1] * 5, [0] * 7 + [-1] * 2])),
        "additive": torch.where(_padding_mask([9, 6], 9), 0.0, torch.finfo(torch.float32).min),
    }[mask]
    module = nn.Module()
    module.is_causal = False
    expected, _ = sdpa_attention_forward(module, q, k, v, attend, dropout=0.0, scaling=0.3)
    got, _ = attention(module, q, k, v, attend, dropout=1e-9, scaling=0.3)
    assert got.shape == expected.shape == (2, 9, 4, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_model_with_cheaper_dropout_evaluates_exactly_as_before_and_still_drops_out(tiny_bert):
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=5).eval()
    fast = copy.deepcopy(model)
    use_fast_dropout(fast)
    assert fast.config._attn_implementation == ATTENTION
    assert not [m for m in fast.modules() if type(m) is nn.Dropout]
    ids = torch.randint(5, 100, (2, 12))
    segments = torch.tensor([[0] * 5 + [1] * 7, [0] * 9 + [-1] * 3])
    positions = torch.tensor([list(range(5)) + list(range(7)), list(range(12))])
    for kwargs in ({"attention_mask": block_mask(segments), "position_ids": positions}, {}):
        assert torch.equal(fast(input_ids=ids, **kwargs).logits, model(input_ids=ids, **kwargs).logits)
    fast.train()
    first = fast(input_ids=ids, attention_mask=block_mask(segments), position_ids=positions).logits
    second = fast(input_ids=ids, attention_mask=block_mask(segments), position_ids=positions).logits
    assert not torch.equal(first, second)  # dropout is on
    first.sum().backward()
    grads = [p.grad for p in fast.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_saved_model_does_not_name_the_training_attention(tiny_bert, tmp_path):
    """Checkpoints (``hf_config``) and exported models must load in plain transformers, which knows no
    ``sdpa_cheap_dropout``."""
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=5)
    use_fast_dropout(model)
    assert model.config._attn_implementation == ATTENTION
    assert ATTENTION not in str(model.config.to_dict())
    model.save_pretrained(tmp_path)
    assert ATTENTION not in (tmp_path / "config.json").read_text()
