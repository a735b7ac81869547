"""The encoder a run starts from: a pretrained one (a preset, a hub id or a local directory), with the first
column's classifier new, or a fine-tuned one (a checkpoint or an exported model directory: a warm start)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PreTrainedModel

from nasty_lightning.errors import UserError
from nasty_lightning.formats.presets import PRESETS, locate_model
from nasty_lightning.formats.untrusted import check_model_dir, is_checkpoint
from nasty_lightning.labels.heads import LabelSchema
from nasty_lightning.training.warm_start import encoder_from_checkpoint, encoder_from_model_dir, is_model_dir


def load_encoder(model_name: str, schema: LabelSchema, trust_remote_code: bool) -> tuple[PreTrainedModel, Path, bool]:
    """The encoder of ``--model.model_name`` with the first column's classifier, in training mode; where it was
    found; and whether it is fine-tuned (a warm start, whose heads ``warm_start.warm_start_heads`` matches)."""
    first, column = list(schema[0].vocab.labels), schema.columns[0]
    source = locate_model(model_name)  # local path, cached hub model, or a hub id the hub answers for
    fine_tuned = is_checkpoint(source) or is_model_dir(source)
    sentences_first = schema[0].is_sentence  # the encoder's own classifier labels sentences
    if fine_tuned and sentences_first:
        raise UserError(
            f"--model.model_name {model_name} is a fine-tuned model: a warm start of a model whose first column "
            f"({column}) labels sentences is not supported; start from a pretrained encoder"
        )
    if is_checkpoint(source):
        model = encoder_from_checkpoint(source, first, column)
    elif is_model_dir(source):
        model = encoder_from_model_dir(source, first, column)
    else:
        check_model_dir(source, trust_remote_code)
        try:
            auto = AutoModelForSequenceClassification if sentences_first else AutoModelForTokenClassification
            # a sigmoid per label in transformers' pipeline("text-classification") too
            problem = {"problem_type": "multi_label_classification"} if schema[0].multi_label else {}
            model = auto.from_pretrained(
                source,
                num_labels=len(first),
                id2label=dict(enumerate(first)),
                label2id={label: i for i, label in enumerate(first)},
                trust_remote_code=trust_remote_code,
                use_safetensors=True,  # pickled weights (pytorch_model.bin) can run code when loaded
                **problem,
            )
        except (OSError, ValueError) as err:
            raise UserError(
                f"cannot load model {model_name!r} ({str(err).splitlines()[0]}); give a Hugging Face hub id, "
                f"a local model directory, a checkpoint, or a preset: minilm, {', '.join(PRESETS)}"
            ) from None
    return model.train(), source, fine_tuned  # from_pretrained returns eval mode, which Lightning would keep
