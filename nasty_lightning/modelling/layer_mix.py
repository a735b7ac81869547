"""A learned mix of the encoder's layers: what the heads read instead of the last layer alone.

Lower layers of a pretrained encoder hold more of a word's form and syntax, the last more of what its
pretraining task needed. With ``--model.layer_mix true`` the heads read a weighted sum of the embeddings and
every layer's output, the weights a softmax of learned scores (equal at the start) times a learned scale
(ELMo's scalar mix). The mix learns at the heads' rate and travels with the model (``model_dir.LAYER_MIX_FILE``).
"""

from __future__ import annotations

import torch
from torch import nn


class LayerMix(nn.Module):
    """``scale * sum_i softmax(weights)_i * states_i`` over ``n_states`` hidden states of one shape."""

    def __init__(self, n_states: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_states))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, states: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        if len(states) != len(self.weights):
            raise ValueError(f"the layer mix has {len(self.weights)} weights for {len(states)} hidden states")
        shares = torch.softmax(self.weights.float(), dim=0).to(states[-1].dtype)
        # a sum of products, not a matrix product: quantize turns every MatMul of the graph into INT8
        mixed = sum(share * state for share, state in zip(shares, states, strict=True))
        return self.scale.to(mixed.dtype) * mixed
