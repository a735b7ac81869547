"""The forward pass from a batch's tensors to each head's logits: the encoder, the casing embedding, layer mix and
character network a model may have, and every head.

One function, ``head_logits``, used by training (``TokenTagger``, whose parameters keep the names checkpoints have)
and by tagging (``Network``: the same parts as one module, which ``quantize`` exports to ONNX).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from nasty_lightning.data.batch import Batch
from nasty_lightning.data.packing import position_offset
from nasty_lightning.modelling import bert_family
from nasty_lightning.modelling.casing import encoder_inputs
from nasty_lightning.modelling.chars import CharEncoder
from nasty_lightning.modelling.layer_mix import LayerMix
from nasty_lightning.modelling.pooling import SentenceHead, classifier_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def head_logits(
    model: nn.Module,
    heads: Iterable[nn.Module],
    casing_layer: nn.Embedding | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    casing: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    pooling: str = "first",
    mix: LayerMix | None = None,
    char_layer: CharEncoder | None = None,
    chars: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """The (rows, width, labels) logits of every head from one pass of the encoder ``model``: first its own
    classifier's, then those of ``heads`` (layers on the same last hidden states, behind the classifier's dropout:
    linear on every position, or ``pooling.SentenceHead`` on the pooled states). ``attention_mask`` and
    ``position_ids`` as the encoder takes them: a padding mask, or packed rows' block mask and positions.
    ``pooling``: of a sequence classifier ``model`` (``pooling.classifier_logits``). With a layer ``mix``, every
    head reads the mix of the encoder's hidden states instead of the last (the first head then is the model's
    classifier layer on the mix: a token classifier's). A ``char_layer`` adds its vectors of the batch's ``chars``
    (``modelling.chars``) to those hidden states, and the first head is then the classifier layer on the sum too."""
    heads = list(heads)
    classifier_only = mix is None and char_layer is None  # the first head: the model's own classifier
    out = model(
        **encoder_inputs(model, input_ids, casing_layer, casing),
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=bool(heads) or pooling == "mean" or attention_mask.dim() == 4 or not classifier_only,
    )
    if classifier_only:
        first = classifier_logits(model, out, attention_mask, pooling)
        if not heads:
            return (first,)
        hidden = out.hidden_states[-1]
    else:
        hidden = out.hidden_states[-1] if mix is None else mix(out.hidden_states)
    if char_layer is not None:
        if chars is None:
            raise ValueError("a model with a character network needs the batch's character ids")
        hidden = hidden + char_layer(chars)
    dropout = getattr(model, "dropout", None)  # our BERT family has none
    if dropout is not None:
        hidden = dropout(hidden)
    if not classifier_only:
        first = model.classifier(hidden)
    rest = [head(hidden, attention_mask) if isinstance(head, SentenceHead) else head(hidden) for head in heads]
    return (first, *rest)


class Network(nn.Module):
    """The encoder, the heads after its classifier (``layers``, by column), the casing embedding, layer mix and
    character network a model has, as one module: (input ids, attention mask, casing classes, and character ids if
    it reads them) to each head's logits. ``Tagger`` runs it, ``quantize`` exports it."""

    def __init__(
        self,
        model: PreTrainedModel | bert_family.TokenClassifier,
        layers: nn.ModuleDict,
        casing: nn.Embedding | None,
        pooling: str = "first",
        mix: LayerMix | None = None,
        chars: CharEncoder | None = None,
    ) -> None:
        super().__init__()
        self.model, self.layers, self.casing, self.pooling, self.mix = model, layers, casing, pooling, mix
        self.chars = chars
        self.position_offset = position_offset(model) or 0

    @property
    def packs(self) -> bool:
        """Whether rows may hold several sentences (``packing``): with our own BERT family, not with transformers'
        classes (``fit`` checks each of those with ``packing.accepts_packed_rows``; tagging keeps padded rows)."""
        return isinstance(self.model, bert_family.TokenClassifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        casing: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        chars: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        return head_logits(
            self.model,
            self.layers.values(),
            self.casing,
            input_ids,
            attention_mask,
            casing,
            position_ids,
            self.pooling,
            self.mix,
            self.chars,
            chars,
        )

    def run(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The logits of a batch (padded or packed rows) made on the CPU, its inputs moved to ``device``."""
        inputs = (None if x is None else x.to(device) for x in batch.encoder_inputs(self.position_offset))
        return self(*inputs, chars=None if self.chars is None else batch.chars.to(device))
