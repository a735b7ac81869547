"""Casing: what an uncased encoder cannot see, given to it as a learned embedding.

An uncased tokenizer (MiniLM's, BERT uncased) lowercases every word before the encoder sees it, which
hides the strongest cue to a name. With ``--model.casing true`` each subword's input embedding gets one
more vector added: that of its word's casing class below. The vectors start at zero, so training
starts from the pretrained encoder exactly, and they are saved with the model (``CASING_FILE``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The class names travel with an exported model: the model directory's format names them, in id order.
from nasty_lightning.model_dir import CASING_FILE, CASINGS  # noqa: F401 - warm_start imports CASING_FILE from here

if TYPE_CHECKING:  # no PyTorch at import: the constants serve --help and export's metadata
    import torch
    from torch import nn

_CLASS = {name: i for i, name in enumerate(CASINGS)}


def casing_class(word: str) -> int:
    """The casing class of a word: lower (dog), title (Dog), upper (DOG, NASA), mixed (iPhone), digits
    (1990, 3.14), letters_digits (A4, 2nd), other (punctuation and symbols)."""
    letters = [c for c in word if c.isalpha()]
    has_digit = any(c.isdigit() for c in word)
    if not letters:
        return _CLASS["digits" if has_digit else "other"]
    if has_digit:
        return _CLASS["letters_digits"]
    if all(c.islower() for c in letters):
        return _CLASS["lower"]
    if all(c.isupper() for c in letters):
        return _CLASS["upper" if len(letters) > 1 else "title"]
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return _CLASS["title"]
    return _CLASS["mixed"]


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
