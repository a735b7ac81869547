"""Callbacks that break a run on purpose, named by class path on the command line in tests."""

from __future__ import annotations

import os
import signal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class PoisonWeights(Callback):
    """Set one weight matrix to NaN before step ``at_step``, as a diverging run would."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(p for p in pl_module.parameters() if p.ndim == 2).fill_(float("nan"))


class KillAt(Callback):
    """SIGKILL this process when step ``at_step`` is about to start: no cleanup, no final checkpoint."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(Callback):
    """Send this process ``signum`` (2: SIGINT, as Ctrl-C; 15: SIGTERM) when step ``at_step`` is about to start;
    under DDP, only the process of rank ``rank`` if it is given."""

    def __init__(self, at_step: int, signum: int, rank: int | None = None) -> None:
        self.at_step, self.signum, self.rank = at_step, signum, rank

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.at_step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signum)
