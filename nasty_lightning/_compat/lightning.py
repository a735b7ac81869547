"""Lightning internals (checked on Lightning 2.6; ``pyproject.toml`` keeps it below 2.7).

``tests/_compat/test_lightning.py`` fails, naming the internal, when a Lightning release changes one of them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


def validate_also_when(trainer: L.Trainer, extra: Callable[[], bool]) -> None:
    """Make ``fit`` validate wherever Lightning would, and also after any training batch at which ``extra()``
    is true, in the epochs Lightning validates in at all (``check_val_every_n_epoch``).

    Lightning has no public hook for this (``val_check_interval`` replaces the end-of-epoch validation); it asks
    ``TrainingEpochLoop._should_check_val_fx(data_fetcher)`` after every batch (and ``_should_check_val_epoch()``
    for the epoch), which this wraps on the trainer's own loop. Both exist from Lightning 2.0 on.
    """
    loop = trainer.fit_loop.epoch_loop
    lightning_says = loop._should_check_val_fx

    def should_check(data_fetcher: Any) -> bool:
        return lightning_says(data_fetcher) or (loop._should_check_val_epoch() and extra())

    loop._should_check_val_fx = should_check


def subcommand_parser(cli: LightningCLI, subcommand: str) -> LightningArgumentParser:
    """The parser of one subcommand (``fit``, ``validate``, ...) of ``cli``, from ``parse_arguments`` on.

    LightningCLI keeps them in its private ``_subcommand_parsers`` (Lightning 2.0 on) and has no public accessor.
    """
    return cli._subcommand_parsers[subcommand]


class OwnCheckpointSettings:
    """A ``LightningCLI`` mixin that turns off LightningCLI's own reading of ``--ckpt_path``'s hyperparameters.

    Lightning 2.6's ``LightningCLI.__init__`` (from a 2.5 release on) calls the private ``_parse_ckpt_path()``
    right after ``parse_arguments``: it loads the checkpoint and parses its hyperparameters *over* the command
    line and config files, ``trust_remote_code`` included. A CLI with this mixin reads them itself, in its
    ``parse_arguments``. (Lightning's open pull request 21408 would add a public hook for this.)
    """

    def _parse_ckpt_path(self) -> None:
        """Nothing: ``parse_arguments`` took what it wants from the checkpoint."""


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an earlier ``metrics.csv`` (Lightning's deletes it), continuing its columns."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to an existing ``metrics.csv`` instead of deleting it (and warning).

    Lightning's experiment writer deletes the file from its ``__init__``, in the private
    ``_ExperimentWriter._check_log_dir_exists()``, which this overrides; ``CSVLogger.experiment`` builds the
    writer in its private ``_experiment`` with its private ``_fs``, which this does the same way with the
    writer above. All three exist from Lightning 2.0 on.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
