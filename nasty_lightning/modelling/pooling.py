"""Sentence heads: one label for a whole sentence or text, from the encoder's pooled output.

Pooling (``--model.pooling``): ``first``, the first token's hidden state (``[CLS]``, ``<s>``), as BERT and RoBERTa
are pretrained to classify; ``mean``, the mean over the subwords, as sentence encoders (MiniLM) are pretrained.
A model whose first head labels sentences is its architecture's own sequence classifier
(``AutoModelForSequenceClassification``, which plain ``transformers`` and its ``pipeline`` load): with ``first``
its logits are that classifier's as it stands (BERT's pooler, RoBERTa's classification head); with ``mean`` the
mean goes to the classifier layer instead of the pooler, which only ``Tagger`` knows.

A sentence head's logits are those of its window's pooled states at every position of the window, so that every
head's logits have one shape, (rows, width, labels); its label is read, and learned, at the first word of each
window. Pooling goes by window, so rows that pack several windows (``data.packing``) pool each apart.
"""

from __future__ import annotations

import torch
from torch import nn

from nasty_lightning.errors import UserError


def window_starts(attention_mask: torch.Tensor) -> torch.Tensor:
    """(rows, width): the position at which each position's window starts. Padded rows (a (rows, width) padding
    mask) hold one window from position 0, their padding each a group of its own; packed rows (the (rows, 1,
    width, width) block mask of ``packing``) several, each position's start its first position it may attend to."""
    if attention_mask.dim() == 4:
        return attention_mask[:, 0].int().argmax(-1)
    own = torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), torch.zeros_like(own), own)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(rows, width, hidden): at every position, its window's pooled states: those of the window's first position
    (``first``), or their mean over the window (``mean``)."""
    starts = window_starts(attention_mask)[..., None].expand_as(hidden)
    if pooling == "first":
        return hidden.gather(1, starts)
    sums = torch.zeros_like(hidden).scatter_add_(1, starts, hidden)
    counts = torch.zeros_like(hidden[..., :1]).scatter_add_(1, starts[..., :1], torch.ones_like(hidden[..., :1]))
    return (sums / counts.clamp(min=1)).gather(1, starts)


class SentenceHead(nn.Linear):
    """A linear layer on the pooled hidden states (its weights are a plain ``nn.Linear``'s, as a word head's)."""

    def __init__(self, hidden_size: int, n_labels: int, pooling: str) -> None:
        super().__init__(hidden_size, n_labels)
        self.pooling = pooling

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(pool(hidden, attention_mask, self.pooling))


def head_layer(is_sentence: bool, hidden_size: int, n_labels: int, pooling: str) -> nn.Linear:
    """The layer of a head after the first: a word's (linear on every position) or a sentence's."""
    return SentenceHead(hidden_size, n_labels, pooling) if is_sentence else nn.Linear(hidden_size, n_labels)


def classifier_logits(model: nn.Module, out, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The first head's (rows, width, labels) logits from the encoder model's output ``out``: a token classifier's
    as they are; a sequence classifier's repeated at every position, or computed here from the last hidden states
    by window: with ``mean`` pooling through the model's classifier layer, and for packed rows with ``first``
    through BERT's own pooler and classifier (``pools_by_window``)."""
    if out.logits.dim() == 3:
        return out.logits
    if pooling == "mean":
        return model.classifier(model.dropout(pool(out.hidden_states[-1], attention_mask, "mean")))
    if attention_mask.dim() == 4:  # packed rows: the model's logits are of each row's first window only
        pooler = model.base_model.pooler
        first = pool(out.hidden_states[-1], attention_mask, "first")
        return model.classifier(model.dropout(pooler.activation(pooler.dense(first))))
    return out.logits[:, None, :].expand(-1, attention_mask.shape[-1], -1)


def pools_by_window(model: nn.Module, pooling: str) -> bool:
    """Whether the sequence classifier ``model`` can label every window of a packed row: with ``mean`` pooling
    (one linear classifier layer, ``check_pooling``), or with ``first`` where it is BERT's (a pooler of a dense
    layer and an activation, then one linear layer)."""
    if pooling == "mean":
        return True
    pooler = getattr(model.base_model, "pooler", None)
    return (
        isinstance(getattr(pooler, "dense", None), nn.Linear)
        and isinstance(getattr(pooler, "activation", None), nn.Module)
        and isinstance(getattr(model, "classifier", None), nn.Linear)
        and isinstance(getattr(model, "dropout", None), nn.Module)
    )


def check_pooling(model: nn.Module, pooling: str) -> None:
    """Refuse a pooling the sequence classifier ``model`` cannot take."""
    linear = isinstance(getattr(model, "classifier", None), nn.Linear)
    if pooling == "mean" and not (linear and isinstance(getattr(model, "dropout", None), nn.Module)):
        raise UserError(
            f"--model.pooling mean needs a classifier that is one linear layer (BERT's); {type(model).__name__} "
            "has its own pooling head: use --model.pooling first"
        )
