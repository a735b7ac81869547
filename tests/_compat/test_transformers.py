"""The transformers internals ``nasty_lightning._compat.transformers`` relies on."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel

from nasty_lightning._compat.transformers import (
    attends_both_ways,
    attention_implementation,
    register_attention,
    route_attention,
    sdpa_attention,
)


def test_attention_implementation_is_what_the_model_runs(tiny_bert):
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="sdpa")
    assert attention_implementation(model) == "sdpa", (
        "transformers no longer keeps the attention a model runs in config._attn_implementation: the cheaper CPU "
        "dropout (use_fast_dropout) never routes attention through itself"
    )
    model.set_attn_implementation("eager")
    assert attention_implementation(model) == "eager"
    assert attention_implementation(nn.Linear(2, 2)) is None


def test_a_registered_attention_is_what_the_model_runs(tiny_bert):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return sdpa_attention()(*args, **kwargs)

    register_attention("counted_sdpa", counted)
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="sdpa").eval()
    model.set_attn_implementation("counted_sdpa")
    model(input_ids=torch.tensor([[2, 10, 11, 3]]))
    assert calls, "transformers' attention registry (AttentionInterface) no longer routes attention to what it holds"


def test_route_attention_switches_an_sdpa_model_and_leaves_the_others(tiny_bert):
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="sdpa")
    assert route_attention(model, "routed_sdpa", sdpa_attention())
    assert attention_implementation(model) == "routed_sdpa"
    eager = AutoModel.from_pretrained(tiny_bert, attn_implementation="eager")
    assert not route_attention(eager, "routed_sdpa", sdpa_attention())
    assert attention_implementation(eager) == "eager"


def test_an_encoders_attention_module_says_it_attends_both_ways(tiny_bert):
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="sdpa")
    attention = [m for m in model.modules() if hasattr(m, "is_causal")]
    assert attention, "transformers' BERT attention modules no longer carry is_causal, which attends_both_ways reads"
    assert all(attends_both_ways(m) for m in attention)
    causal = nn.Module()
    causal.is_causal = True
    grouped = nn.Module()
    grouped.num_key_value_groups = 4
    assert not attends_both_ways(causal) and not attends_both_ways(grouped)
