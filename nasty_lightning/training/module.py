"""The Lightning module: a Hugging Face token-classification encoder, its loss, metrics and optimiser."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from transformers import get_linear_schedule_with_warmup

from nasty_lightning.data.batch import Batch
from nasty_lightning.data.packing import accepts_packed_rows, position_offset
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import POOLINGS
from nasty_lightning.labels.heads import IGNORE, LabelSchema
from nasty_lightning.modelling.casing import casing_embedding
from nasty_lightning.modelling.chars import CharEncoder
from nasty_lightning.modelling.crf import TRANSITIONS_RATE_FACTOR, Transitions
from nasty_lightning.modelling.decoding import IOB2Decoders
from nasty_lightning.modelling.dropout import use_fast_dropout
from nasty_lightning.modelling.layer_mix import LayerMix
from nasty_lightning.modelling.network import head_logits
from nasty_lightning.modelling.pooling import check_pooling, head_layer, pools_by_window
from nasty_lightning.training.encoder import load_encoder
from nasty_lightning.training.losses import head_loss
from nasty_lightning.training.optimisation import default_head_learning_rate, parameter_groups
from nasty_lightning.training.scores import Scores, ThresholdCounts, bit_masks, label_bits
from nasty_lightning.training.warm_start import warm_start_heads

# The loss weight of the word columns after the first, unless --model.loss_weights names them (docs/experiments.md,
# Defaults).
AUX_LOSS_WEIGHT = 0.2


class TokenTagger(L.LightningModule):
    """Fine-tunes a pretrained encoder to give every word one label per head (its first subword's prediction)."""

    def __init__(
        self,
        model_name: str = "minilm",
        labels: list[str] | dict[str, list[str]] | None = None,
        learning_rate: float = 3e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        loss_weights: dict[str, float] | None = None,
        head_learning_rate: float | None = None,
        casing: bool = False,
        trust_remote_code: bool = False,
        compile: bool = False,
        validation_precision: Literal["training", "float32"] = "training",
        pooling: Literal["first", "mean"] = "first",
        multi_label: bool = False,
        layer_mix: bool = False,
        layer_decay: float = 1.0,
        label_smoothing: float = 0.0,
        crf: bool = False,
        chars: bool = False,
    ) -> None:
        """
        Args:
            model_name: Pretrained encoder: a preset (minilm, roberta_base, bert_base_cased, distilbert_base,
                xlm_roberta_base, bert_base_multilingual_cased), a Hugging Face hub id or a local directory;
                the guide's ``--model``. A checkpoint of an earlier run (``RUN/checkpoints/best.ckpt``) starts
                from its fine-tuned weights (a warm start; tags matched by name and column, new ones start
                untrained).
            labels: Tag names in id order, by column (linked from the data module's vocabulary); a plain list
                for one column without a name.
            learning_rate: Peak AdamW learning rate; the guide's ``--learning-rate``.
            weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
            warmup_ratio: Fraction of the training steps over which the learning rate rises linearly
                from 0, before it decays linearly to 0.
            loss_weights: With several columns, the weight of each column's loss in their sum, e.g.
                ``{lemma: 0.5}``; columns not named weigh 1, except the word columns after the first, 0.2 (at 1
                they pull the shared encoder away from the first: docs/experiments.md, Defaults).
            head_learning_rate: Peak learning rate of the heads (the linear layers on the encoder, which start
                untrained, with the casing vectors and the layer mix). Default: chosen from the number of training
                steps, ``1e-3 * sqrt(2000 / steps)`` between 1e-3 and 1e-2 (1e-3 from 2,000 steps on, 4.6e-3 for
                the 96 steps of 500 sentences in 3 epochs of 16), never below ``learning_rate``; for a warm start,
                whose heads are trained, ``learning_rate``. Printed when fit starts.
            casing: Add a learned embedding of each word's casing (lower, Title, UPPER, mixed, digits, ...) to
                its subwords' input embeddings, for uncased encoders such as MiniLM, which cannot see
                capitals. It starts at zero and learns at the heads' rate.
            trust_remote_code: Run model code shipped with a hub model. Off unless you trust its author; never
                taken from a checkpoint or a file, only from what you type.
            compile: Compile the encoder with ``torch.compile`` (dynamic shapes, as batch lengths vary). The
                compilation time did not pay on our 2-core CPU: half the words/s in a 1-epoch run (docs/benchmarks.md).
            validation_precision: What validation during ``fit`` computes in: ``training``, the training
                precision (with bf16-mixed on our CPU, validation of EWT dev took 4.4 s instead of 6.3 s, and 12 of
                its 25,147 words were tagged otherwise); ``float32``, as the exported model tags by default, so that
                the scores and the choice of the best checkpoint are exactly that model's. Test scores are always
                computed in float32.
            pooling: How a head that labels whole sentences (a column that is not a word's, such as a CoNLL-U
                comment's ``genre`` or a TSV's ``label``) sums up the sentence: ``first``, the first token's
                hidden state (``[CLS]``, ``<s>``; for a first column that labels sentences, the architecture's
                own classifier, which plain ``transformers`` loads as it is); ``mean``, the mean over the subwords,
                as sentence encoders such as MiniLM are trained (for a first column, BERT's classifier layer on
                the mean instead of its pooler: only ``Tagger`` computes that).
            multi_label: The columns that label texts give each text a set of labels, each a yes or no (linked
                from ``--data.multi_label``): a sigmoid per label, binary cross-entropy, and a threshold per label
                chosen at every validation (saved with the checkpoint; validation scores are at 0.5).
            layer_mix: The heads read a learned mix of the encoder's layers (embeddings and every layer's output,
                ``modelling.layer_mix``) instead of its last layer; it learns at the heads' rate. The exported
                model then needs ``Tagger`` (``tag``, ``eval``, ``serve``): plain ``transformers`` would read the
                last layer. Not for a model whose first column labels texts.
            layer_decay: Layer-wise learning-rate decay: the encoder's top layer learns at ``learning_rate``, each
                layer below at this factor times the rate of the layer above, the embeddings last (1: every layer
                at ``learning_rate``).
            label_smoothing: Label smoothing of the cross-entropy of every head that picks one label (0: none): the
                target gives this share of its weight evenly to all labels.
            crf: Heads of IOB2 tags (NER) learn a score for each tag following each other (a linear-chain CRF,
                ``modelling.crf``): trained on whole tag sequences, decoded by Viterbi with them. They travel in
                the model directory's ``nasty_lightning.json``; plain ``transformers`` tags word by word without
                them. A warm start learns them anew.
            chars: Add a small network of each word's characters (``modelling.chars``) to the last hidden state
                of its subwords, before the heads: what the spelling of words unseen in training says. It starts
                at zero and learns at the heads' rate. The exported model then needs ``Tagger``. Not for a model
                whose first column labels texts. MiniLM on EWT: +0.24 UPOS on the guide's recipe, +0.06 on the best,
                for about a fifth more training time (docs/experiments.md).
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
        if not 0 < layer_decay <= 1:
            raise UserError(f"--model.layer_decay must be above 0 and at most 1, got {layer_decay}")
        if not 0 <= label_smoothing < 1:
            raise UserError(f"--model.label_smoothing must be at least 0 and below 1, got {label_smoothing}")
        if pooling not in POOLINGS:
            raise UserError(f"--model.pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if validation_precision not in ("training", "float32"):
            raise UserError(f"--model.validation_precision must be training or float32, got {validation_precision!r}")
        self.save_hyperparameters()
        # One column's labels may come as a plain list (its name is the data's business): a nameless column.
        self.schema = LabelSchema.of(labels, multi_label=multi_label)
        self.columns = self.schema.columns
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - set(self.columns))
        if unknown:
            raise UserError(f"--model.loss_weights names {', '.join(unknown)}, not a predicted column")
        if any(not w >= 0 for w in weights.values()):
            raise UserError(f"--model.loss_weights must be at least 0, got {weights}")
        self.head_learning_rate = head_learning_rate  # chosen from the number of steps if None (configure_optimizers)
        self.loss_weights = [
            float(weights.get(h.column, AUX_LOSS_WEIGHT if i and not h.is_sentence else 1.0))
            for i, h in enumerate(self.schema)
        ]
        if not any(self.loss_weights):
            raise UserError(f"--model.loss_weights {weights} gives every column weight 0: nothing would be trained")
        self.model, source, fine_tuned = load_encoder(model_name, self.schema, trust_remote_code)
        self.warm_start = fine_tuned  # heads matched by column and label
        sentences_first = self.schema[0].is_sentence  # the encoder's own classifier labels sentences
        if sentences_first:
            check_pooling(self.model, pooling)
            for option, on in (("layer_mix", layer_mix), ("chars", chars)):
                if on:
                    raise UserError(
                        f"--model.{option} needs a first column that labels words; {self.columns[0]} labels texts"
                    )
        # The first column's head is the encoder's own classifier (plain transformers loads it); every other
        # column has a linear layer on the same last hidden states, behind the classifier's dropout.
        hidden = self.model.config.hidden_size
        self.heads = nn.ModuleDict(
            {h.column: head_layer(h.is_sentence, hidden, len(h.vocab), pooling) for h in self.schema.heads[1:]}
        )
        self.casing = casing_embedding(hidden) if casing else None
        self.layer_mix = LayerMix(self.model.config.num_hidden_layers + 1) if layer_mix else None
        self.chars = CharEncoder(hidden) if chars else None
        if fine_tuned:
            warm_start_heads(self.heads, self.schema, source, self.casing, self.layer_mix, self.chars)
        # Whether training batches may pack several sentences into a row (the data module asks): not where the
        # first head is a sequence classifier that cannot label each window of a row.
        by_window = not sentences_first or pools_by_window(self.model, pooling)
        self.accepts_packed_rows = by_window and accepts_packed_rows(self.model)
        self._position_offset = position_offset(self.model) or 0
        if compile:
            self.model.compile(dynamic=True)  # in place: parameter names, and so checkpoints, stay the same
        # Heads of IOB2 tags (NER) decode the best valid tag sequence (with --model.crf, under learned transition
        # scores), and are scored by entity F1 too.
        entities = [h for h, head in enumerate(self.schema) if head.is_entities]
        if crf and not entities:
            raise UserError(
                f"--model.crf needs a column of IOB2 tags (B-X, I-X, O); {', '.join(self.columns)} has none"
            )
        self.transitions = nn.ModuleDict({str(h): Transitions(len(self.schema[h].vocab)) for h in entities if crf})
        self.decoders = IOB2Decoders(self.schema, {self.columns[int(h)]: t for h, t in self.transitions.items()})
        self.train_scores = Scores(self.schema, entities=False)
        self.val_scores = Scores(self.schema)
        self.test_scores = Scores(self.schema)
        self.val_parts: list[tuple[str, int]] = []  # with several validation files (data.val_parts)
        self.val_file_scores = nn.ModuleList()
        # multi-label heads, by column: each label's threshold, chosen on the validation files (0.5 before)
        self.thresholds = {h.column: [0.5] * len(h.vocab) for h in self.schema if h.multi_label}
        self.threshold_counts = nn.ModuleDict(
            {str(h): ThresholdCounts(len(head.vocab)) for h, head in enumerate(self.schema) if head.multi_label}
        )
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self._tokenizer_files: dict[str, bytes] | None = None

    @property
    def labels(self) -> list[str]:
        """The first column's labels."""
        return list(self.schema[0].vocab.labels)

    @property
    def max_positions(self) -> int | None:
        """The most subwords a sequence may hold (the position table's size), or None if unbounded."""
        table = getattr(self.model.config, "max_position_embeddings", None)
        return None if table is None else table - self._position_offset

    def forward(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The logits of every head, from one pass of the encoder (``network.head_logits``)."""
        inputs = batch.encoder_inputs(self._position_offset)
        pooling = self.hparams.get("pooling", "first")
        return head_logits(
            self.model, self.heads.values(), self.casing, *inputs, pooling, self.layer_mix, self.chars, batch.chars
        )

    def _step(
        self, batch: Batch, constrained: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Summed (weighted) loss over the batch's labelled words (a sentence head's: its mean loss per window
        times the first head's count, where it is not the first), the first head's word count, the
        predictions and targets of every head, as (rows, width, heads), and the logits; with ``constrained``,
        heads of IOB2 tags predict each row's best valid tag sequence. Each head's loss is ``losses.head_loss``;
        a multi-label head's prediction is the bit mask of its labels above 0.5."""
        logits = self(batch)
        targets = batch.labels
        loss_sum = logits[0].new_zeros((), dtype=torch.float32)
        sentence_heads = self.schema.sentence_heads
        segments = None if batch.packing is None else batch.packing.segments
        smoothing = self.hparams.get("label_smoothing", 0.0) if self.training else 0.0
        for h, (head, head_scores, weight) in enumerate(zip(self.schema, logits, self.loss_weights, strict=True)):
            head_targets = targets[..., h]
            if not head.multi_label:  # the unseen id (one past the last label) is no class: left out of the loss
                head_targets = head_targets.masked_fill(head_targets == head_scores.shape[-1], IGNORE)
            if h == 0:
                n_words = (head_targets != IGNORE).sum()
            if not weight:
                continue
            transitions = self.transitions[str(h)] if str(h) in self.transitions else None
            loss = head_loss(head, head_scores, head_targets, transitions, segments, smoothing)
            if h in sentence_heads and h > 0:  # one example per window, weighed as the first column's mean
                loss = loss / (head_targets != IGNORE).sum().clamp(min=1) * n_words
            loss_sum = loss_sum + weight * loss
        preds = torch.stack(
            [
                bit_masks(head_scores > 0) if head.multi_label else head_scores.argmax(-1)
                for head, head_scores in zip(self.schema, logits, strict=True)
            ],
            dim=-1,
        )
        if constrained and self.decoders:
            words = batch.word_mask if batch.word_mask is not None else (targets != IGNORE).any(-1)
            for row, at in enumerate(words):
                positions = at.nonzero().squeeze(-1)
                for h, ids in self.decoders.rows(logits, row, positions):
                    preds[row, positions, h] = torch.tensor(ids, device=preds.device)
        return loss_sum, n_words, preds, targets, logits

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss_sum, n_words, preds, targets, _ = self._step(batch)
        if not torch.isfinite(loss_sum):  # stop before this step's update spoils the weights
            raise UserError(
                f"the training loss became {loss_sum.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch + 1}); the checkpoints saved so far are intact. "
                "Try a lower --model.learning_rate."
            )
        self.train_scores.update(preds, targets)
        self.log("train_loss", loss_sum / n_words.clamp(min=1), prog_bar=True)  # the mean, to read
        # Per step only: an epoch-level value logged at the end of an epoch would be lost by a run resumed there.
        self.log("train_acc", self.train_scores.accuracy[0], prog_bar=True)
        # what is optimised: every word weighs the same, however many words the batch holds
        return loss_sum / (n_words.clamp(min=1) if batch.loss_norm is None else batch.loss_norm)

    def setup(self, stage: str) -> None:
        """With several validation files (the data module's ``val_parts``), scores for each of them too."""
        self.val_parts = list(getattr(getattr(self.trainer, "datamodule", None), "val_parts", []))
        self.val_file_scores = nn.ModuleList(Scores(self.schema) for _ in self.val_parts)

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":  # GPUs draw dropout masks fast (dropout.py)
            use_fast_dropout(self.model)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        preds, targets = self._evaluate(batch, self.val_loss, self.val_scores, "val")
        if not self.val_parts:
            return
        starts = torch.tensor([start for _, start in self.val_parts], device=batch.sentence.device)
        part = torch.bucketize(batch.sentence, starts, right=True) - 1  # each row's file
        for k, ((name, _), scores) in enumerate(zip(self.val_parts, self.val_file_scores, strict=True)):
            scores.update(preds[part == k], targets[part == k])
            for metric_name, metric in scores.named("val").items():
                self.log(f"{metric_name}/{name}", metric)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_scores, "test")

    def _evaluate(
        self, batch: Batch, loss_metric: MeanMetric, scores: Scores, prefix: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Test in float32, as the exported model tags; validation as --model.validation_precision says.
        full = prefix == "test" or self.hparams.get("validation_precision", "training") == "float32"
        with torch.autocast(self.device.type, enabled=False) if full else nullcontext():
            loss_sum, n_words, preds, targets, logits = self._step(batch, constrained=True)
        if prefix == "val":  # the counts each multi-label head's thresholds are chosen from
            for h, counts in self.threshold_counts.items():
                at = targets[..., int(h)] != IGNORE
                gold = label_bits(targets[..., int(h)][at], len(self.schema[int(h)].vocab))
                counts.update(torch.sigmoid(logits[int(h)][at].float()), gold)
        # Weighted by word count, so the epoch value is the mean over words, exact across DDP ranks.
        loss_metric.update(loss_sum / n_words.clamp(min=1), weight=n_words)
        scores.update(preds, targets)
        self.log(f"{prefix}_loss", loss_metric, prog_bar=True)
        for name, metric in scores.named(prefix).items():
            self.log(name, metric, prog_bar=name == f"{prefix}_acc")
        return preds, targets

    def on_validation_epoch_end(self) -> None:
        """Each multi-label head's thresholds: those of the best F1 of every label on this validation."""
        for h, counts in self.threshold_counts.items():
            self.thresholds[self.columns[int(h)]] = [round(t, 2) for t in counts.compute().tolist()]
            counts.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        total = int(self.trainer.estimated_stepping_batches)
        default = h.learning_rate if self.warm_start else max(h.learning_rate, default_head_learning_rate(total))
        self.head_learning_rate = h.get("head_learning_rate") or default
        # the heads, and what starts untrained with them: the casing vectors, the layer mix, the character network
        extra = [p for m in (self.casing, self.layer_mix, self.chars) if m is not None for p in m.parameters()]
        head_params = [*self.heads.parameters(), *self._classifier_parameters(), *extra]
        transitions = list(self.transitions.parameters())
        heads = {id(p) for p in [*head_params, *transitions]}
        encoder = [(n, p) for n, p in self.named_parameters() if id(p) not in heads]
        groups = parameter_groups(
            encoder, head_params, h.learning_rate, self.head_learning_rate, h.get("layer_decay", 1.0), h.weight_decay
        )
        if transitions:  # faster still, without weight decay (modelling.crf)
            rate = TRANSITIONS_RATE_FACTOR * self.head_learning_rate
            groups.append({"params": transitions, "weight_decay": 0.0, "lr": rate})
        optimizer = torch.optim.AdamW(
            groups,
            lr=h.learning_rate,
            # one kernel for all parameters: several times faster than the default on CPU too; not with float16's
            # gradient scaler, which must unscale before clipping
            fused=not self._scaled_gradients(),
        )
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm=None
    ) -> None:
        """``--trainer.gradient_clip_val``, also beside the fused optimizer in bf16-mixed and float32, where no
        gradient is scaled (Lightning's mixed-precision plugin refuses every fused optimizer)."""
        if not gradient_clip_val:
            return
        if self._scaled_gradients():
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif gradient_clip_algorithm == "value":
            nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
        else:
            nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def _scaled_gradients(self) -> bool:
        """Whether training scales the loss (float16 mixed precision)."""
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def _classifier_parameters(self) -> list[nn.Parameter]:
        """The first column's head: the encoder model's own classifier layer."""
        classifier = getattr(self.model, "classifier", None)
        return list(classifier.parameters()) if isinstance(classifier, nn.Linear) else []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the encoder's config and tokenizer files in the checkpoint, so it loads without the hub, and
        the latest validation scores, which the model card of the checkpoint shows."""
        checkpoint["hf_config"] = self.model.config.to_dict()
        if self._tokenizer_files is None:
            tokenizer = self.trainer.datamodule.tokenizer
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer.save_pretrained(tmp)
                self._tokenizer_files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        checkpoint["tokenizer_files"] = self._tokenizer_files
        scores = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val_")}
        if scores:
            checkpoint["validation_scores"] = scores
        if self.thresholds:
            checkpoint["thresholds"] = self.thresholds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The multi-label heads' thresholds, as the last validation before the checkpoint chose them."""
        self.thresholds |= {c: list(t) for c, t in checkpoint.get("thresholds", {}).items() if c in self.thresholds}
