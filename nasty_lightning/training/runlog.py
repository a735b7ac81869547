"""The run's ``metrics.csv``, kept whole across resumptions.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so a resumed run would
lose the history of the run it continues (and the model card its training curves). ``RunLogger``
keeps the file and appends to it; ``RunRecord`` (in ``callbacks``) flushes it at every checkpoint,
stores how many rows it had, and on resume cuts the rows written after that checkpoint, which the
resumed run logs again.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an earlier ``metrics.csv`` (the run folder rule in ``cli`` decides whether one may exist)."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class RunLogger(CSVLogger):
    """``CSVLogger`` that appends to the run folder's ``metrics.csv`` instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def count_rows(path: Path) -> int:
    """Data rows (after the header) of a CSV file; 0 when there is no file."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def keep_rows(path: Path, n: int) -> None:
    """Cut a CSV file to its header and first ``n`` data rows."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) > n + 1:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows[: n + 1])
