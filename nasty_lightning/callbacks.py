"""Callbacks: when to validate, the per-epoch summary line, and the record of a run."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class ValidationSchedule(Callback):
    """Validate at the end of every epoch, and also every ``every_n_steps`` training steps.

    Lightning's own ``val_check_interval=N`` replaces end-of-epoch validation (unless N divides the
    epoch) and fails when N exceeds an epoch; this keeps both schedules. After each epoch's
    validation it prints ``Epoch 1 completed. validation_loss: 0.1842, validation_accuracy: 0.951``.
    """

    def __init__(self, every_n_steps: int = 500) -> None:
        """
        Args:
            every_n_steps: Also validate (and save the best checkpoint) every N optimizer steps;
                0 validates only at the end of each epoch. The guide's ``--eval-steps``.
        """
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.every_n_steps:
            return
        loop = trainer.fit_loop.epoch_loop
        at_epoch_end = loop._should_check_val_fx
        done_at = {-1}

        def should_check(data_fetcher) -> bool:
            if at_epoch_end(data_fetcher):
                return True
            step = trainer.global_step
            if step % self.every_n_steps or step in done_at or not loop._should_check_val_epoch():
                return False
            done_at.add(step)  # with gradient accumulation, several batches share one step
            return True

        loop._should_check_val_fx = should_check

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if not trainer.is_global_zero or "val_loss" not in metrics:
            return
        line = (
            f"Epoch {trainer.current_epoch + 1} completed. validation_loss: {float(metrics['val_loss']):.4f}, "
            f"validation_accuracy: {float(metrics['val_acc']):.3f}"
        )
        if trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.print(line)  # above the bar, without breaking it
        else:
            print(line, flush=True)


class RunRecord(Callback):
    """Keeps what a model card reports, in every checkpoint: the command, the training time (summed over
    resumptions), the hardware and the library versions."""

    def __init__(self, command: str = "") -> None:
        self.command = command
        self.train_seconds = 0.0  # fit time from the first step, validation included
        self.validation_seconds = 0.0  # of which validation
        self._started: float | None = None
        self._validating: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_seconds = self._elapsed()
        self._started = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._started is not None:  # not the sanity check before training
            self._validating = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validating is not None:
            self.validation_seconds += time.monotonic() - self._validating
            self._validating = None

    def _elapsed(self) -> float:
        return self.train_seconds + (time.monotonic() - self._started if self._started is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "train_seconds": self._elapsed(),
            "validation_seconds": self.validation_seconds,
            "hardware": hardware(),
            "versions": versions(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = state_dict["train_seconds"]
        self.validation_seconds = state_dict.get("validation_seconds", 0.0)
        self.command = self.command or state_dict["command"]


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return (
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )


def versions() -> dict[str, str]:
    import lightning
    import transformers

    import nasty_lightning

    found = {
        "nasty-lightning": nasty_lightning.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
    }
    return {name: str(version) for name, version in found.items()}  # plain str: checkpoints load weights_only
