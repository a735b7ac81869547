"""The Lightning module: a Hugging Face token-classification encoder, its loss, metrics and optimiser."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from transformers import AutoConfig, AutoModelForTokenClassification, PreTrainedModel, get_linear_schedule_with_warmup

from nasty_lightning.encoding import IGNORE
from nasty_lightning.errors import UserError
from nasty_lightning.packing import accepts_packed_rows, block_mask, position_offset
from nasty_lightning.presets import PRESETS, locate_model
from nasty_lightning.untrusted import check_model_dir, checkpoint_model_dir, is_checkpoint


class TokenTagger(L.LightningModule):
    """Fine-tunes a pretrained encoder to give every word one label (its first subword's prediction)."""

    def __init__(
        self,
        model_name: str = "minilm",
        labels: list[str] | None = None,
        learning_rate: float = 3e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        trust_remote_code: bool = False,
        compile: bool = False,
    ) -> None:
        """
        Args:
            model_name: Pretrained encoder: a preset (minilm, roberta_base, bert_base_cased, distilbert_base,
                xlm_roberta_base, bert_base_multilingual_cased), a Hugging Face hub id or a local directory;
                the guide's ``--model``. A checkpoint of an earlier run (``RUN/checkpoints/best.ckpt``) starts
                from its fine-tuned weights (a warm start; tags matched by name, new ones start untrained).
            labels: Tag names, in id order (linked from the data module's label vocabulary).
            learning_rate: Peak AdamW learning rate; the guide's ``--learning-rate``.
            weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
            warmup_ratio: Fraction of the training steps over which the learning rate rises linearly
                from 0, before it decays linearly to 0.
            trust_remote_code: Run model code shipped with a hub model. Off unless you trust its author; never
                taken from a checkpoint or a file, only from what you type.
            compile: Compile the encoder with ``torch.compile`` (dynamic shapes, as batch lengths vary). The
                compilation time did not pay on our 2-core CPU: half the words/s in a 1-epoch run (README).
        """
        super().__init__()
        if not labels:
            raise UserError("the model needs a label vocabulary (from --data.train_file or a checkpoint)")
        if not learning_rate > 0:
            raise UserError(f"--model.learning_rate must be positive, got {learning_rate}")
        if not weight_decay >= 0:
            raise UserError(f"--model.weight_decay must be at least 0, got {weight_decay}")
        if not 0 <= warmup_ratio < 1:
            raise UserError(f"--model.warmup_ratio must be at least 0 and below 1, got {warmup_ratio}")
        self.save_hyperparameters()
        source = locate_model(model_name)  # local path, cached hub model, or a hub id the hub answers for
        if is_checkpoint(source):
            self.model = encoder_from_checkpoint(source, labels)
        else:
            check_model_dir(source, trust_remote_code)
            try:
                self.model = AutoModelForTokenClassification.from_pretrained(
                    source,
                    num_labels=len(labels),
                    id2label=dict(enumerate(labels)),
                    label2id={label: i for i, label in enumerate(labels)},
                    trust_remote_code=trust_remote_code,
                    use_safetensors=True,  # pickled weights (pytorch_model.bin) can run code when loaded
                )
            except (OSError, ValueError) as err:
                raise UserError(
                    f"cannot load model {model_name!r} ({str(err).splitlines()[0]}); give a Hugging Face hub id, "
                    f"a local model directory, a checkpoint, or a preset: minilm, {', '.join(PRESETS)}"
                ) from None
        self.model.train()  # from_pretrained returns eval mode, which Lightning would keep: no dropout
        # Whether training batches may pack several sentences into a row (the data module asks).
        self.accepts_packed_rows = accepts_packed_rows(self.model)
        self._position_offset = position_offset(self.model) or 0
        if compile:
            self.model.compile(dynamic=True)  # in place: parameter names, and so checkpoints, stay the same
        # One extra class stands for labels never seen in training: never predicted, so always wrong.
        classes = len(labels) + 1
        self.train_acc = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE)
        self.val_acc = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE)
        self.test_acc = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self._tokenizer_files: dict[str, bytes] | None = None

    @property
    def labels(self) -> list[str]:
        return self.hparams.labels

    @property
    def max_positions(self) -> int | None:
        """The most subwords a sequence may hold (the position table's size), or None if unbounded."""
        table = getattr(self.model.config, "max_position_embeddings", None)
        return None if table is None else table - self._position_offset

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed loss over the batch's labelled words, their count, predictions and targets."""
        if "segments" in batch:  # packed rows (packing.py)
            positions = batch["position_ids"] + self._position_offset
            logits = self(batch["input_ids"], block_mask(batch["segments"]), positions)
        else:
            logits = self(batch["input_ids"], batch["attention_mask"])
        targets = batch["labels"]
        loss_targets = targets.masked_fill(targets == len(self.labels), IGNORE)
        n_words = (loss_targets != IGNORE).sum()
        loss_sum = F.cross_entropy(logits.flatten(0, 1), loss_targets.flatten(), ignore_index=IGNORE, reduction="sum")
        return loss_sum, n_words, logits.argmax(-1), targets

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, n_words, preds, targets = self._step(batch)
        if not torch.isfinite(loss_sum):  # stop before this step's update spoils the weights
            raise UserError(
                f"the training loss became {loss_sum.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch + 1}); the checkpoints saved so far are intact. "
                "Try a lower --model.learning_rate."
            )
        self.train_acc(preds, targets)
        self.log("train_loss", loss_sum / n_words.clamp(min=1), prog_bar=True)  # the mean, to read
        # Per step only: an epoch-level value logged at the end of an epoch would be lost by a run resumed there.
        self.log("train_acc", self.train_acc, prog_bar=True)
        # what is optimised: every word weighs the same, however many words the batch holds
        return loss_sum / batch["loss_norm"] if "loss_norm" in batch else loss_sum / n_words.clamp(min=1)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_acc, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_acc, "test")

    def _evaluate(self, batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy, prefix: str) -> None:
        # In full precision even when training is mixed: scores, and the choice of the best checkpoint, are
        # those of the exported model, which tags in float32.
        with torch.autocast(self.device.type, enabled=False):
            loss_sum, n_words, preds, targets = self._step(batch)
        # Weighted by word count, so the epoch value is the mean over words, exact across DDP ranks.
        loss_metric.update(loss_sum / n_words.clamp(min=1), weight=n_words)
        acc_metric.update(preds, targets)
        self.log(f"{prefix}_loss", loss_metric, prog_bar=True)
        self.log(f"{prefix}_acc", acc_metric, prog_bar=True)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """Tags of each window's words, with the sentence and the first word they belong to."""
        preds = self(batch["input_ids"], batch["attention_mask"]).argmax(-1)
        return [
            {"sentence": int(s), "first_word": int(f), "tags": [self.labels[i] for i in row[mask].tolist()]}
            for s, f, row, mask in zip(batch["sentence"], batch["first_word"], preds, batch["word_mask"], strict=True)
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        no_decay = [p for p in self.parameters() if p.ndim < 2]  # biases and LayerNorm weights
        decay = [p for p in self.parameters() if p.ndim >= 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.learning_rate,
            fused=True,  # one kernel for all parameters: several times faster than the default on CPU too
        )
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the encoder's config and tokenizer files in the checkpoint, so it loads without the hub."""
        checkpoint["hf_config"] = self.model.config.to_dict()
        if self._tokenizer_files is None:
            tokenizer = self.trainer.datamodule.tokenizer
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer.save_pretrained(tmp)
                self._tokenizer_files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        checkpoint["tokenizer_files"] = self._tokenizer_files


def encoder_from_checkpoint(ckpt_path: str, labels: list[str]) -> PreTrainedModel:
    """The fine-tuned encoder of a checkpoint, with a classifier for ``labels``: rows of tags the checkpoint
    knows are copied by name, new tags start untrained. Needs no base model: the checkpoint has its config."""
    with checkpoint_model_dir(ckpt_path) as (folder, ckpt):
        config = AutoConfig.from_pretrained(folder)
    config.num_labels = len(labels)
    config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    model = AutoModelForTokenClassification.from_config(config)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    old_labels = ckpt["TaggingDataModule"]["labels"]
    if old_labels != labels:
        if not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
            raise UserError(f"checkpoint {ckpt_path} has other tags, and its model has no classifier to match them")
        row = {label: i for i, label in enumerate(old_labels)}
        kept = [i for i, label in enumerate(labels) if label in row]
        for name in ("classifier.weight", "classifier.bias"):
            rows = model.state_dict()[name].clone()
            rows[kept] = weights[name][[row[labels[i]] for i in kept]].to(rows.dtype)
            weights[name] = rows
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"checkpoint {ckpt_path}: its weights do not fit its own model configuration ({str(err).splitlines()[0]})"
        ) from None
    return model
