"""transformers internals (checked on transformers 5.25; ``pyproject.toml`` keeps it below 5.26).

``tests/_compat/test_transformers.py`` fails, naming the internal, when a release changes one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def attention_implementation(model: Any) -> str | None:
    """The attention ``model`` runs (``"sdpa"``, ``"eager"``, a registered name), or ``None`` for a model
    without a transformers config.

    transformers has ``set_attn_implementation`` but no public getter: the value is the config's private
    ``_attn_implementation`` (4.36 on; in 5.x a property), which transformers' own models read.
    """
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def sdpa_attention() -> Callable[..., Any]:
    """transformers' SDPA attention function, as its attention registry (``AttentionInterface``) holds it."""
    from transformers import AttentionInterface

    return AttentionInterface()["sdpa"]


def register_attention(name: str, function: Callable[..., Any]) -> None:
    """Register ``function`` as attention ``name``, taking the mask SDPA takes (``AttentionMaskInterface``), so
    that ``model.set_attn_implementation(name)`` routes a model's attention through it."""
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, AttentionMaskInterface()["sdpa"])


def route_attention(model: Any, name: str, function: Callable[..., Any]) -> bool:
    """Route the attention of ``model``, where it runs SDPA, through ``function`` registered as ``name``
    (``register_attention``); whether it now does. A model that takes only the attention kinds it names
    (``set_attn_implementation`` raises ``ValueError``) keeps SDPA."""
    if attention_implementation(model) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    register_attention(name, function)
    try:
        model.set_attn_implementation(name)
    except ValueError:
        model.set_attn_implementation("sdpa")
        return False
    return True


def attends_both_ways(module: Any) -> bool:
    """Whether the attention ``module`` handing itself to an attention function attends without a causal mask and
    with a key and value per query head: what transformers' attention functions read from the module's
    ``is_causal`` and ``num_key_value_groups`` (absent on encoders such as BERT: both ways, one each)."""
    return not getattr(module, "is_causal", False) and getattr(module, "num_key_value_groups", 1) == 1


def attention_with_dropout(drop: Callable[[Any, float], Any]) -> Callable[..., Any]:
    """An attention function in transformers' calling convention (``AttentionInterface``: the module, query, key
    and value as (batch, heads, positions, dim), a mask that is True or 0 where a position may attend; it returns
    the output as (batch, positions, heads, dim) and no weights): SDPA's own whenever no dropout applies or the
    module is not a plain bidirectional one, else the same product with ``drop(probabilities, p)``."""
    import torch

    sdpa = sdpa_attention()

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        if not dropout or not attends_both_ways(module):
            return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(2, 3)) * scale
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + attention_mask
        probs = drop(torch.softmax(scores, dim=-1), dropout)
        return torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous(), None

    return attention
