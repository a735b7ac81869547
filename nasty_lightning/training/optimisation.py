"""The optimiser's learning rates: the encoder's by layer (layer-wise decay), and the heads' default.

The heads start untrained, and at the encoder's learning rate a short run barely moves them: by default they
learn at ``HEAD_LEARNING_RATE`` from ``HEAD_STEPS`` training steps on, and faster the fewer steps a run has, at
most ``HEAD_LEARNING_RATE_MAX`` (docs/experiments.md, Defaults).
"""

from __future__ import annotations

import math
import re
from typing import Any

from torch import nn

HEAD_LEARNING_RATE, HEAD_LEARNING_RATE_MAX, HEAD_STEPS = 1e-3, 1e-2, 2000
LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")  # an encoder layer's parameters: bert.encoder.layer.3.output...


def encoder_groups(
    named: list[tuple[str, nn.Parameter]], learning_rate: float, layer_decay: float
) -> list[tuple[list[nn.Parameter], float]]:
    """The encoder's parameters in groups by learning rate: with ``layer_decay`` below 1, layer ``i`` of ``n``
    (``...layer.i.`` or ``...layers.i.`` in the name, from 0) at ``learning_rate * layer_decay ** (n - 1 - i)``,
    the embeddings at ``learning_rate * layer_decay ** n``, the rest (poolers, final norms) at ``learning_rate``."""
    params = [p for _, p in named]
    if layer_decay == 1:
        return [(params, learning_rate)]
    depth = {}
    for name, p in named:
        found = LAYER_INDEX.search(name)
        depth[id(p)] = int(found.group(1)) + 1 if found else 0 if "embeddings" in name else None
    top = max((d for d in depth.values() if d is not None), default=0)
    by_rate: dict[float, list[nn.Parameter]] = {}
    for p in params:
        d = depth[id(p)]
        by_rate.setdefault(learning_rate * layer_decay ** (top - (top if d is None else d)), []).append(p)
    return [(group, rate) for rate, group in by_rate.items()]


def parameter_groups(
    encoder: list[tuple[str, nn.Parameter]],
    heads: list[nn.Parameter],
    learning_rate: float,
    head_learning_rate: float,
    layer_decay: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the encoder's by layer (``encoder_groups``) and the heads at
    ``head_learning_rate``, each without weight decay on biases and LayerNorm weights (fewer than 2 dimensions)."""
    groups = []
    for params, lr in (*encoder_groups(encoder, learning_rate, layer_decay), (heads, head_learning_rate)):
        groups.append({"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay, "lr": lr})
        groups.append({"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": lr})
    return [g for g in groups if g["params"]]


def default_head_learning_rate(steps: int) -> float:
    """The heads' peak learning rate for a run of ``steps`` optimiser steps: ``HEAD_LEARNING_RATE`` times
    ``sqrt(HEAD_STEPS / steps)``, between ``HEAD_LEARNING_RATE`` and ``HEAD_LEARNING_RATE_MAX``."""
    rate = HEAD_LEARNING_RATE * math.sqrt(HEAD_STEPS / max(steps, 1))
    return min(HEAD_LEARNING_RATE_MAX, max(HEAD_LEARNING_RATE, rate))
