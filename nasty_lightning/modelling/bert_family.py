"""BERT-family token classifiers in plain PyTorch, for tagging without transformers' modelling code.

Importing a transformers model class imports its whole modelling library (1.1 s of the 3.2 s that tagging
one sentence took, docs/benchmarks.md); the arithmetic of an encoder is a few lines. ``load`` builds BERT,
RoBERTa, XLM-R and DistilBERT token classifiers from an exported directory's ``config.json`` and
``model.safetensors``, with the module names of transformers' own classes, so the weights load with
``strict=True`` and the logits equal transformers' (tested in
``tests/test_bert_family.py``). A configuration outside what is written here (another architecture, relative
positions, another activation) gets ``None``, and the caller loads the model with transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}
_PREFIX = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "distilbert": "distilbert"}


@dataclass
class Config:
    """What the encoder's shape and labels are, read from ``config.json``; ``save_pretrained`` writes it back."""

    model_type: str
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    activation: str
    max_positions: int
    type_vocab_size: int  # 0: no token types (DistilBERT)
    layer_norm_eps: float
    pad_token_id: int
    id2label: dict[int, str]
    raw: dict[str, Any] = field(repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def save_pretrained(self, folder: str | Path) -> None:
        (Path(folder) / "config.json").write_text(json.dumps(self.raw, indent=2, sort_keys=True) + "\n")


def read_config(raw: Any) -> Config | None:
    """The ``Config`` of a parsed ``config.json``, or ``None`` if this module does not implement the model."""
    try:
        kind = raw["model_type"]
        if kind not in _PREFIX or raw.get("is_decoder") or raw.get("add_cross_attention"):
            return None
        if raw.get("position_embedding_type", "absolute") != "absolute":
            return None
        labels = {int(k): v for k, v in raw["id2label"].items()}
        if sorted(labels) != list(range(len(labels))) or not all(isinstance(v, str) for v in labels.values()):
            return None
        if kind == "distilbert":
            shape = (raw["dim"], raw["n_layers"], raw["n_heads"], raw["hidden_dim"], raw["activation"], 0, 1e-12)
        else:
            shape = (
                raw["hidden_size"],
                raw["num_hidden_layers"],
                raw["num_attention_heads"],
                raw["intermediate_size"],
                raw["hidden_act"],
                raw["type_vocab_size"],
                raw["layer_norm_eps"],
            )
        hidden, layers, heads, intermediate, activation, types, eps = shape
        sizes = (raw["vocab_size"], hidden, layers, heads, intermediate, raw["max_position_embeddings"], types)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
            return None
        if activation not in _ACTIVATIONS or not heads or hidden % heads or not isinstance(eps, int | float):
            return None
        pad = raw.get("pad_token_id", 0)
        if not isinstance(pad, int) or isinstance(pad, bool):
            return None
        return Config(kind, sizes[0], hidden, layers, heads, intermediate, activation, sizes[5], types, eps, pad,
                      labels, raw)  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class Linear(nn.Linear):
    """``nn.Linear`` left uninitialised: ``load`` assigns every weight. (Random initialisation took 0.15 s, and
    on the meta device it imports torch._dynamo, 0.8 s.)"""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    """``nn.Embedding`` left uninitialised, as ``Linear``."""

    def reset_parameters(self) -> None:
        pass


class Output(NamedTuple):
    """As transformers' ``TokenClassifierOutput``: the logits, and with ``output_hidden_states`` the embeddings'
    output and every layer's."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None


class Embeddings(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        # RoBERTa and XLM-R count positions from after the padding id, as transformers' table records it
        roberta = config.model_type in ("roberta", "xlm-roberta")
        self.position_embeddings = Embedding(
            config.max_positions, config.hidden_size, padding_idx=config.pad_token_id if roberta else None
        )
        if config.type_vocab_size:
            self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``positions``: given for packed rows (``packing.position_offset`` onwards); else counted along each row."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if positions is None:
            positions = torch.arange(length, device=inputs_embeds.device).expand(batch, length)
            pad = self.position_embeddings.padding_idx  # RoBERTa, XLM-R: counted from after it, as fairseq
            if pad is not None:
                if input_ids is not None:
                    real = input_ids.ne(pad).int()
                    positions = (torch.cumsum(real, dim=1).type_as(real) * real).long() + pad
                else:
                    positions = positions + pad + 1
        embeddings = inputs_embeds + self.position_embeddings(positions)
        if self.config.type_vocab_size:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(positions)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(embeddings)


def attention(q: nn.Linear, k: nn.Linear, v: nn.Linear, x: torch.Tensor, mask: torch.Tensor, heads: int):
    """Multi-head self-attention over ``x`` (batch, length, hidden); ``mask``: (batch, 1, 1, length), true where
    a key may be attended to, or (batch, 1, length, length) for packed rows, true where a query may attend to a key."""
    batch, length, hidden = x.shape
    split = [f(x).view(batch, length, heads, hidden // heads).transpose(1, 2) for f in (q, k, v)]
    return F.scaled_dot_product_attention(*split, attn_mask=mask).transpose(1, 2).reshape(batch, length, hidden)


class SelfAttention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.query, self.key, self.value = (Linear(config.hidden_size, config.hidden_size) for _ in range(3))


class DenseNorm(nn.Module):
    """transformers' ``BertSelfOutput`` / ``BertOutput``: a linear layer, then LayerNorm of it plus the residual."""

    def __init__(self, config: Config, inputs: int) -> None:
        super().__init__()
        self.dense = Linear(inputs, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.attention = nn.Module()
        self.attention.self = SelfAttention(config)
        self.attention.output = DenseNorm(config, config.hidden_size)
        self.intermediate = nn.Module()
        self.intermediate.dense = Linear(config.hidden_size, config.intermediate_size)
        self.output = DenseNorm(config, config.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention.self
        x = self.attention.output(attention(a.query, a.key, a.value, x, mask, self.config.heads), x)
        return self.output(_ACTIVATIONS[self.config.activation](self.intermediate.dense(x)), x)


class DistilBertLayer(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.attention = nn.Module()
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            setattr(self.attention, name, Linear(hidden, hidden))
        self.sa_layer_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = nn.Module()
        self.ffn.lin1 = Linear(hidden, config.intermediate_size)
        self.ffn.lin2 = Linear(config.intermediate_size, hidden)
        self.output_layer_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention
        x = self.sa_layer_norm(a.out_lin(attention(a.q_lin, a.k_lin, a.v_lin, x, mask, self.config.heads)) + x)
        return self.output_layer_norm(self.ffn.lin2(_ACTIVATIONS[self.config.activation](self.ffn.lin1(x))) + x)


class Encoder(nn.Module):
    """Embeddings and layers, named as transformers names them (``encoder.layer`` or ``transformer.layer``)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        distil = config.model_type == "distilbert"
        self.stack = "transformer" if distil else "encoder"
        stack = nn.Module()
        stack.layer = nn.ModuleList((DistilBertLayer if distil else BertLayer)(config) for _ in range(config.layers))
        setattr(self, self.stack, stack)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, every: bool = False) -> list[torch.Tensor]:
        """The last layer's output for the embeddings' output ``x`` and the attention ``mask``; with ``every``,
        ``x`` and every layer's."""
        states = [x]
        for layer in getattr(self, self.stack).layer:
            x = layer(x, mask)
            if every:  # else each layer's output is freed once the next has read it
                states.append(x)
        return states if every else [x]


class TokenClassifier(nn.Module):
    """An encoder and a linear classifier over its last hidden states, called as transformers'
    ``*ForTokenClassification`` is (for inference: no dropout, no loss)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        setattr(self, _PREFIX[config.model_type], Encoder(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    @property
    def encoder(self) -> Encoder:
        return getattr(self, _PREFIX[self.config.model_type])

    base_model = encoder  # transformers' name, which ``packing.position_offset`` reads

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        position_ids: torch.Tensor | None = None,
    ) -> Output:
        """As transformers takes them: ``attention_mask`` (batch, length), 1 on subwords and 0 on padding; or for
        packed rows (``packing``) a (batch, 1, length, length) mask of which position may attend to which, with
        the ``position_ids`` of every sentence of a row."""
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        mask = attention_mask.bool()
        if mask.dim() == 2:
            mask = mask[:, None, None, :]
        x = self.encoder.embeddings(input_ids, inputs_embeds, token_type_ids, position_ids)
        states = self.encoder(x, mask, every=output_hidden_states)
        return Output(self.classifier(states[-1]), tuple(states) if output_hidden_states else None)


def read_config_file(model_dir: Path) -> Config | None:
    """The ``Config`` of ``model_dir``'s ``config.json``, or ``None`` where the file cannot be read as JSON or
    asks for a model this module does not implement."""
    try:
        raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return read_config(raw) if isinstance(raw, dict) else None


def load(model_dir: Path) -> TokenClassifier | None:
    """The token classifier of an exported model directory, or ``None`` where its ``config.json`` asks for
    something this module does not implement, or its weights are not exactly what the configuration needs
    (transformers' loading then reports what is wrong)."""
    config = read_config_file(model_dir)
    if config is None:
        return None
    with torch.device("meta"):  # nothing allocated before the file's shapes are checked against config.json
        model = TokenClassifier(config)
    try:
        weights = load_file(model_dir / "model.safetensors")
        model.load_state_dict(weights, strict=True, assign=True)
    except (OSError, SafetensorError, RuntimeError):
        return None
    return model.eval()
