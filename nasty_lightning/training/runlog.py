"""The run's ``metrics.csv``, kept whole across resumptions.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so a resumed run would
lose the history of the run it continues (and the model card its training curves). ``RunLogger``
keeps the file and appends to it; ``RunRecord`` (in ``callbacks``) flushes it at every checkpoint,
stores how many rows it had, and on resume cuts the rows written after that checkpoint, which the
resumed run logs again.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nasty_lightning._compat.lightning import AppendingCSVLogger


class RunLogger(AppendingCSVLogger):
    """``CSVLogger`` that appends to the run folder's ``metrics.csv`` instead of deleting it (the run folder
    rule in ``train_cli`` decides whether one may exist)."""


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
