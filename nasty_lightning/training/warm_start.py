"""Starting ``fit`` from a fine-tuned model: a checkpoint of an earlier run, or an exported model directory.

The encoder is taken whole, and the casing embedding and the layer mix where both models have one. Every head's rows are
matched by column name (the source's classifier may be another column's head), then by label name: a label
the source knows keeps its row, a label new in the data gets a new, untrained row, and a label the data
lacks is dropped. Matching by position instead would give a new label set of the same size the old rows
under the new names: silently wrong tags.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import (
    CASING_FILE,
    CHARS_FILE,
    HEADS_FILE,
    LAYER_MIX_FILE,
    META_FILE,
    QUANTIZATION,
    read_meta,
)
from nasty_lightning.formats.untrusted import check_model_dir, checkpoint_model_dir, is_checkpoint, load_checkpoint
from nasty_lightning.labels.heads import LabelSchema


def is_model_dir(source: str) -> bool:
    """Whether ``source`` is a model directory written by ``fit`` or ``export`` (it has ``META_FILE``)."""
    return (Path(source) / META_FILE).is_file()


def _copy_rows(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor, old: list[str], new: list[str]) -> None:
    """Set the rows of ``layer`` (labels ``new``) from those of the same labels in ``weight`` and ``bias``."""
    row = {label: i for i, label in enumerate(old)}
    kept = [i for i, label in enumerate(new) if label in row]
    source = [row[new[i]] for i in kept]
    with torch.no_grad():
        layer.weight[kept] = weight[source].to(layer.weight.dtype)
        layer.bias[kept] = bias[source].to(layer.bias.dtype)


def _source_heads(source: str) -> tuple[dict[str, list[str]], dict[str, torch.Tensor]]:
    """The labels of every column of a checkpoint or model directory, and the weights a warm start copies:
    ``<column>.weight`` and ``<column>.bias`` of each head (the first is the classifier), ``casing``,
    ``layer_mix.weights`` and ``layer_mix.scale``, and the character network's ``chars.<name>``."""
    if is_checkpoint(source):
        return _checkpoint_heads(load_checkpoint(source))

    weights: dict[str, torch.Tensor] = {}
    folder = Path(source)
    meta = read_meta(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    labels = LabelSchema.from_model_dir(config, meta, folder).to_dict()
    with safe_open(folder / "model.safetensors", "pt") as f:
        for part in ("weight", "bias"):
            weights[f"{meta['label_column']}.{part}"] = f.get_tensor(f"classifier.{part}")
    if (folder / HEADS_FILE).is_file():
        with safe_open(folder / HEADS_FILE, "pt") as f:
            weights |= {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    if (folder / CASING_FILE).is_file():
        with safe_open(folder / CASING_FILE, "pt") as f:
            weights["casing"] = f.get_tensor("weight")
    if (folder / LAYER_MIX_FILE).is_file():
        with safe_open(folder / LAYER_MIX_FILE, "pt") as f:
            weights |= {f"layer_mix.{name}": f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    if (folder / CHARS_FILE).is_file():
        with safe_open(folder / CHARS_FILE, "pt") as f:
            weights |= {f"chars.{name}": f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    return labels, weights


def _checkpoint_heads(ckpt: dict) -> tuple[dict[str, list[str]], dict[str, torch.Tensor]]:
    """``_source_heads`` of a loaded checkpoint."""
    labels = LabelSchema.from_checkpoint(ckpt["TaggingDataModule"]).to_dict()
    state, first, weights = ckpt["state_dict"], next(iter(labels)), {}
    for column in labels:
        prefix = "model.classifier." if column == first else f"heads.{column}."
        weights[f"{column}.weight"], weights[f"{column}.bias"] = state[f"{prefix}weight"], state[f"{prefix}bias"]
    if "casing.weight" in state:
        weights["casing"] = state["casing.weight"]
    weights |= {name: value for name, value in state.items() if name.startswith(("layer_mix.", "chars."))}
    return labels, weights


def warm_start_heads(
    heads: nn.ModuleDict,
    schema: LabelSchema,
    source: str,
    casing: nn.Embedding | None = None,
    mix: nn.Module | None = None,
    chars: nn.Module | None = None,
) -> None:
    """Start the extra heads from the source's heads of the same columns, row by row by label name, and the
    casing embedding, the layer mix and the character network from the source's, if both have one of the same
    size (the classifier is the encoder's business)."""
    old, weights = _source_heads(source)
    labels = schema.to_dict()
    for column, layer in heads.items():
        if column in old:
            _copy_rows(layer, weights[f"{column}.weight"], weights[f"{column}.bias"], old[column], labels[column])
    if casing is not None and weights.get("casing", torch.empty(0)).shape == casing.weight.shape:
        with torch.no_grad():
            casing.weight.copy_(weights["casing"])
    if mix is not None and weights.get("layer_mix.weights", torch.empty(0)).shape == mix.weights.shape:
        with torch.no_grad():
            mix.weights.copy_(weights["layer_mix.weights"])
            mix.scale.copy_(weights["layer_mix.scale"])
    own = {} if chars is None else chars.state_dict()
    given = {name.removeprefix("chars."): value for name, value in weights.items() if name.startswith("chars.")}
    if own and given.keys() == own.keys() and all(given[k].shape == own[k].shape for k in own):
        chars.load_state_dict(given)


def _relabel(config: PretrainedConfig, labels: list[str]) -> None:
    """Give a model configuration the classifier labels ``labels``."""
    config.num_labels = len(labels)
    config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}


def encoder_from_model_dir(source: str, labels: list[str], column: str = "") -> PreTrainedModel:
    """The fine-tuned encoder of an exported model directory, with a classifier for the ``labels`` of
    ``column`` (``_match_classifier``)."""

    if QUANTIZATION in read_meta(Path(source)):
        raise UserError(f"{source} is a quantized model: continue from the model directory it was made from")
    check_model_dir(source)
    try:
        model = AutoModelForTokenClassification.from_pretrained(source, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load the model in {source} ({str(err).splitlines()[0]})") from None
    _match_classifier(model, labels, column, *_source_heads(source), source)
    return model


def encoder_from_checkpoint(ckpt_path: str, labels: list[str], column: str = "") -> PreTrainedModel:
    """The fine-tuned encoder of a checkpoint, with a classifier for the ``labels`` of ``column``
    (``_match_classifier``). Needs no base model: the checkpoint has its config."""
    with checkpoint_model_dir(ckpt_path) as (folder, ckpt):
        config = AutoConfig.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_config(config)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"checkpoint {ckpt_path}: its weights do not fit its own model configuration ({str(err).splitlines()[0]})"
        ) from None
    _match_classifier(model, labels, column, *_checkpoint_heads(ckpt), ckpt_path)
    return model


def _match_classifier(
    model: PreTrainedModel,
    labels: list[str],
    column: str,
    old: dict[str, list[str]],
    weights: dict[str, torch.Tensor],
    source: str,
) -> None:
    """Give ``model`` a classifier for the ``labels`` of ``column``, its rows from the source's head of the same
    column, by label name: the source's classifier may predict another column (a model of ``[upos, xpos]``
    warm-starting one of ``[xpos, upos]``). Labels the source's column lacks, and every label of a column the
    source does not predict, start untrained. A column without a name (a single-column model made outside
    ``fit``, whose labels are a plain list) takes the source's classifier, as the column it was trained on."""
    first = next(iter(old))
    match = column if column in old else None if column else first
    if match == first and old[first] == labels:
        return  # the classifier as it is
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise UserError(f"{source} has other tags, and its model has no classifier to match them")
    fresh = nn.Linear(classifier.in_features, len(labels))
    nn.init.normal_(fresh.weight, std=getattr(model.config, "initializer_range", 0.02))
    nn.init.zeros_(fresh.bias)
    if match is not None:
        _copy_rows(fresh, weights[f"{match}.weight"], weights[f"{match}.bias"], old[match], labels)
    model.classifier, model.num_labels = fresh, len(labels)
    _relabel(model.config, labels)
