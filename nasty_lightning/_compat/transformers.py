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


def attends_both_ways(module: Any) -> bool:
    """Whether the attention ``module`` handing itself to an attention function attends without a causal mask and
    with a key and value per query head: what transformers' attention functions read from the module's
    ``is_causal`` and ``num_key_value_groups`` (absent on encoders such as BERT: both ways, one each)."""
    return not getattr(module, "is_causal", False) and getattr(module, "num_key_value_groups", 1) == 1
