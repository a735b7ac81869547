"""Dropout with a cheaper random mask, for training on the CPU.

PyTorch draws a CPU dropout mask with ``bernoulli_``, one Mersenne-twister number per element: 17% of a
bf16 MiniLM training step on a 2-core CPU, most of it in the attention probabilities' dropout (docs/benchmarks.md,
Speed). Here one 64-bit draw gives the random 16-bit numbers of four elements, and an element is dropped
where its number falls below ``p`` of the range: the same rate up to 1/65,536, from the same seeded
generator (so ``seed_everything`` and resumed runs draw the same masks); training ran 1.12x as fast.

``use_fast_dropout`` swaps a Hugging Face model's ``nn.Dropout`` modules for :class:`Dropout` and, where
the model attends through transformers' attention interface with SDPA, routes attention to
:func:`attention`, which is SDPA itself whenever no dropout applies (evaluation) and otherwise the same
product with the cheaper mask on the attention probabilities. GPUs draw masks fast and fuse dropout into
attention, so only CPU training uses it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasty_lightning._compat.transformers import attention_with_dropout, route_attention

ATTENTION = "sdpa_cheap_dropout"
_RANGE = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool mask of ``shape``, each element False (dropped) with probability ``p`` (to 1/65,536)."""
    n = math.prod(shape)
    bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return bits.view(torch.int16)[:n].view(shape) >= round(p * _RANGE) - _RANGE // 2


def drop_out(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-time dropout of ``x``: dropped elements are zero, the others scaled by 1 / (1 - p)."""
    return x * keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1 / (1 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`keep_mask`'s mask (its ``p`` and train/eval behaviour unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_out(x, self.p) if self.training and self.p > 0 else x


# transformers' SDPA attention function, except that attention-probability dropout uses keep_mask's mask
attention = attention_with_dropout(drop_out)


def use_fast_dropout(model: nn.Module) -> None:
    """Swap ``model``'s dropout (modules, and SDPA attention's) for the cheaper mask; outputs in
    evaluation mode stay exactly the same."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace).train(child.training))
    route_attention(model, ATTENTION, attention)
