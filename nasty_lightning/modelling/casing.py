"""Casing: what an uncased encoder cannot see, given to it as a learned embedding.

An uncased tokenizer (MiniLM's, BERT uncased) lowercases every word before the encoder sees it, which
hides the strongest cue to a name. With ``--model.casing true`` each subword's input embedding gets one
more vector added: that of its word's casing class below. The vectors start at zero, so training
starts from the pretrained encoder exactly, and they are saved with the model (``CASING_FILE``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The class names travel with an exported model: the model directory's format names them, in id order.
from nasty_lightning.formats.model_dir import CASINGS

if TYPE_CHECKING:  # no PyTorch at import: the constants serve --help and export's metadata
    import torch
    from torch import nn


def casing_embedding(hidden_size: int) -> nn.Embedding:
    """A zero-initialised embedding of the casing classes (class 0, no word, stays zero)."""
    from torch import nn

    layer = nn.Embedding(len(CASINGS), hidden_size, padding_idx=0)
    nn.init.zeros_(layer.weight)
    return layer


def encoder_inputs(
    model: nn.Module, input_ids: torch.Tensor, casing_layer: nn.Embedding | None, casing: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The inputs of a Hugging Face encoder: ``input_ids``, or with a casing layer their embeddings plus the
    casing vectors (``inputs_embeds``); position and token-type embeddings are added by the model as usual."""
    if casing_layer is None:
        return {"input_ids": input_ids}
    if casing is None:
        raise ValueError("a model with a casing embedding needs the batch's casing classes")
    return {"inputs_embeds": model.get_input_embeddings()(input_ids) + casing_layer(casing)}
