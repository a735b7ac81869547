"""What a training run tells its user: what it is about to do, a progress bar on a terminal or lines of text
elsewhere, a line after every validation, and what it did. Epochs are counted from 1 everywhere, as the guide
counts them."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.trainer.states import TrainerFn

from nasty_lightning.training.module import AUX_LOSS_WEIGHT


def say(trainer: L.Trainer, line: str) -> None:
    """Print ``line`` once (on the first process), above the progress bar if there is one."""
    if not trainer.is_global_zero:
        return
    if trainer.progress_bar_callback is not None:
        trainer.progress_bar_callback.print(line)  # above the bar, without breaking it
    else:
        print(line, flush=True)


class EpochBar(TQDMProgressBar):
    """Lightning's progress bar, with epochs counted from 1 (``Epoch 1/3``) like every line we print."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate, process_position, leave)
        self.leave = leave

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed:  # resumed mid-epoch: no epoch start
            self._describe(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # Lightning's own, but for the description (its "Epoch 0" would be drawn once before ours).
        if self.leave:
            self.train_progress_bar = self.init_train_tqdm()
        self._describe(trainer)

    def _describe(self, trainer: L.Trainer) -> None:
        """The epoch's length and ``Epoch N/M``, counted from 1."""
        self.train_progress_bar.reset(total=convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


FIRST_LINE_SECONDS = 30.0  # with lines, the first comes after this long if every_n_steps iterations take longer


class ProgressLines(Callback):
    """What the run is about to do (``header``), at its start; then lines for logs:
    ``Epoch 1/3, Iteration 100/784: loss=0.3421, accuracy=0.891 (4.2 it/s, 0:09:31 left)`` every ``every_n_steps``
    iterations when output goes to a file (the first one after at most ``FIRST_LINE_SECONDS``), and after every
    validation
    ``Epoch 1/3, Iteration 500/784: validation_loss: 0.1822, validation_accuracy: 0.953`` (mid-epoch) or
    ``Epoch 1 completed. validation_loss: 0.1822, validation_accuracy: 0.953`` (end of an epoch).
    ``validation_accuracy`` is the first predicted column's; a model of several columns adds a line
    ``other columns: xpos: 0.951, feats: 0.962, lemma: 0.975, alltags: 0.930``."""

    def __init__(self, every_n_steps: int = 100, lines: bool | None = None) -> None:
        """
        Args:
            every_n_steps: With ``lines``, print the mean training loss and accuracy, the speed and the time
                left every N iterations (batches) of an epoch; the first such line comes after 30 s at most.
            lines: Print progress as lines of text instead of a progress bar. By default, when standard
                output is not a terminal (a log file, nohup, CI, a cluster job).
        """
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.lines = not sys.stdout.isatty() if lines is None else lines
        self._sums = [0.0, 0.0, 0]  # loss, accuracy, iterations since the last line
        self._started: tuple[float, int] | None = None  # time and iterations done when training (re)started
        self._said = False  # whether a line of training progress was printed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic(), self._done(trainer)
        say(trainer, "\n".join(header(trainer, pl_module)))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        metrics = trainer.callback_metrics
        if not self.lines or "train_loss" not in metrics:
            return
        self._sums[0] += float(metrics["train_loss"])
        self._sums[1] += float(metrics["train_acc"])
        self._sums[2] += 1
        iteration = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        late = not self._said and time.monotonic() - self._started[0] >= FIRST_LINE_SECONDS
        if iteration % self.every_n_steps and not late:
            return
        loss, accuracy, n = self._sums
        self._sums = [0.0, 0.0, 0]
        self._said = True
        say(
            trainer, f"{self._where(trainer)}: loss={loss / n:.4f}, accuracy={accuracy / n:.3f} ({self._pace(trainer)})"
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        epoch_end = trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches
        if not epoch_end:  # the end of an epoch has its own line, below
            say(trainer, f"{self._where(trainer)}: {_scores(trainer)}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val_loss" in trainer.callback_metrics:
            say(trainer, f"Epoch {trainer.current_epoch + 1} completed. {_scores(trainer)}")

    @staticmethod
    def _where(trainer: L.Trainer) -> str:
        iteration = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return (
            f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, "
            f"Iteration {iteration}/{trainer.num_training_batches}"
        )

    @staticmethod
    def _done(trainer: L.Trainer) -> int:
        return trainer.current_epoch * trainer.num_training_batches + (
            trainer.fit_loop.epoch_loop.batch_progress.current.processed
        )

    def _pace(self, trainer: L.Trainer) -> str:
        """Iterations a second since training (re)started, validation included, and the time left."""
        started, done_then = self._started
        done = self._done(trainer)
        rate = (done - done_then) / max(time.monotonic() - started, 1e-9)
        left = trainer.max_epochs * trainer.num_training_batches - done
        return f"{rate:.1f} it/s, {timedelta(seconds=round(left / rate)) if rate else '?'} left"


def header(trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
    """What the run is about to do: the model, the data (sentences and words of each file), the labels of each
    column, the batches and steps, the learning rates and loss weights, the precision and the devices, and where
    it writes."""
    hp = pl_module.hparams
    parameters = sum(p.numel() for p in pl_module.parameters())
    lines = [f"model: {hp.model_name} ({parameters:,} parameters)"]
    data = trainer.datamodule
    if data is not None:
        stats = data.file_stats
        for name, files in (("training", data.train_files), ("validation", data.val_files)):
            for path in files:
                if path in stats:
                    lines.append(
                        f"{name}: {path}: {stats[path]['sentences']:,} sentences, {stats[path]['words']:,} words"
                    )
        sample, augment = data.hparams.max_train_sentences, data.hparams.augment
        if sample or augment:
            lines.append(
                f"trained on: {f'a sample of {sample:,} sentences' if sample else 'every sentence'}"
                + (f", and {augment} altered copies of each" if augment else "")
            )
        lines.append("labels: " + ", ".join(f"{h.column} {len(h.vocab)}" for h in data.heads))
    steps = trainer.max_epochs * trainer.num_training_batches
    lines.append(
        f"batches per epoch: {trainer.num_training_batches:,}; {_count(trainer.max_epochs, 'epoch')}, "
        f"{_count(steps, 'step')}" + (f" (from step {trainer.global_step:,}, resumed)" if trainer.global_step else "")
    )
    if isinstance(getattr(pl_module, "head_learning_rate", None), float):  # TokenTagger, its optimiser configured
        lines.append(_settings(pl_module, int(trainer.estimated_stepping_batches)))
    devices = f"{trainer.num_devices} {type(trainer.accelerator).__name__.removesuffix('Accelerator').lower()}"
    lines.append(f"precision: {trainer.precision}, on {devices} device(s); writing to {trainer.default_root_dir}")
    return lines


def _settings(pl_module: L.LightningModule, steps: int) -> str:
    """The settings the guide leaves open: the heads' learning rate and the columns' loss weights, and which of
    them are defaults (``TokenTagger``'s ``head_learning_rate``, ``loss_weights``)."""
    hp = pl_module.hparams
    line = f"learning rates: encoder {hp.learning_rate:.1e}, heads {pl_module.head_learning_rate:.1e}"
    if not hp.get("head_learning_rate"):
        line += " (default for a warm start)" if pl_module.warm_start else f" (default for {steps:,} steps)"
    schema = pl_module.schema
    if len(schema) > 1:
        weights = zip(schema.columns, pl_module.loss_weights, strict=True)
        line += "; loss weights: " + ", ".join(f"{c} {w:g}" for c, w in weights)
        named = hp.get("loss_weights") or {}
        if any(not h.is_sentence and h.column not in named for h in schema.heads[1:]):
            line += f" (default {AUX_LOSS_WEIGHT:g} for the word columns after the first)"
    return line


def _count(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1: "1 epoch", "1,000 sentences"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def summary(
    best: str,
    monitor: str | None,
    score: float | None,
    epoch: int,
    step: int,
    seconds: float,
    model_dir: str,
    test_file: str,
) -> str:
    """What a finished run did (``best``: the checkpoint exported, with its ``monitor`` score where the run chose
    it by one, its epoch and step), and the command to run next."""
    minutes, secs = divmod(round(seconds), 60)
    took = f"{minutes} min {secs} s" if minutes else f"{secs} s"
    chosen = f"Best {monitor} {score:.4f}" if monitor and score is not None else "Exported"
    return (
        f"Done in {took}. {chosen} at epoch {epoch} (step {step:,}), {best}; the model is in {model_dir}\n"
        f"Next: nasty-train eval --model_dir {model_dir} --test_file {test_file}"
    )


def _scores(trainer: L.Trainer) -> str:
    """The guide's validation line (``validation_accuracy`` is the first column's), and with several columns a
    line of the others: ``other columns: xpos: 0.951, feats: 0.962, lemma: 0.975, alltags: 0.930``."""
    metrics = trainer.callback_metrics
    line = f"validation_loss: {float(metrics['val_loss']):.4f}, validation_accuracy: {float(metrics['val_acc']):.3f}"
    line += _by_file(metrics, "val_acc")
    whole = {k: v for k, v in metrics.items() if "/" not in k}  # not the per-file scores (val_acc/<file>)
    if "val_f1" in whole:  # entity F1 of a first column of NER tags, and of each entity type
        kinds = [f"{k.removeprefix('val_f1_')} {float(v):.3f}" for k, v in whole.items() if k.startswith("val_f1_")]
        line += f", validation_f1: {float(whole['val_f1']):.3f} ({', '.join(kinds)})" + _by_file(metrics, "val_f1")
    first = ("val_loss", "val_acc", "val_micro_f1", "val_macro_f1")
    for name in first[2:]:  # a first column that labels texts (micro-F1: multi-label)
        if name in whole:
            line += f", validation_{name.removeprefix('val_')}: {float(whole[name]):.3f}"
    others = [
        f"{k.removeprefix('val_')}: {float(v):.3f}"
        for k, v in whole.items()
        if k.startswith("val_") and k not in first and not k.startswith("val_f1")
    ]
    return line + ("\nother columns: " + ", ".join(others) if others else "")


def _by_file(metrics: dict, name: str) -> str:
    """`` (en 0.962, es 0.913)``: each validation file's ``name`` score, when there are several."""
    scores = [f"{k.removeprefix(name + '/')} {float(v):.3f}" for k, v in metrics.items() if k.startswith(name + "/")]
    return f" ({', '.join(scores)})" if scores else ""
