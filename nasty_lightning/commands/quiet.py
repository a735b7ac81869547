"""Silence what a user of ``nasty-train`` cannot act on: third-party tips, deprecation notices, load reports.

Called once by ``cli.main``, for the command-line tool only (the library leaves logging and warnings to
its caller). What stays: our own lines, warnings about the user's data and options (one line each, without
the path of the code that warned), and every error.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Lightning's info lines that advertise products or describe its internals.
_LIGHTNING_NOISE = (
    "💡 Tip:",
    "Loading `train_dataloader` to estimate",
    "`weights_only` was not set",
    "GPU available:",  # the accelerator fit uses is in its own first lines
    "TPU available:",
    "HPU available:",
    "Using bfloat16 Automatic Mixed Precision",  # the run's first lines give its precision
    "Using 16bit Automatic Mixed Precision",
    "`Trainer.fit` stopped:",  # the run's last lines say how it ended
)
# Deprecation notices about Lightning's own calls (Lightning 2.6), by message, category and the module that
# made the call: each names one use, so that any other deprecation, the first sign of a change, still shows.
_DEPRECATIONS = (
    # jsonargparse 4.49 on, about LightningCLI's use of it (SaveConfigCallback, parse, instantiate)
    (r"\s*skip_none parameter was deprecated", DeprecationWarning, r"lightning\.pytorch\.cli"),
    (r"\s*``ArgumentParser.add_instantiator`` was deprecated", DeprecationWarning, r"lightning\.pytorch\.cli"),
    (r"\s*``instantiate_classes`` was deprecated", DeprecationWarning, r"lightning\.pytorch\.cli"),
    (r"\s*By default only one JsonargparseDeprecationWarning", DeprecationWarning, r"lightning\.pytorch\.cli"),
    # PyTorch's (seen with 2.13), about Lightning's tree helper (batches and step outputs)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities"),
)
# Warnings that our design makes moot.
_WARNINGS = (
    r"The number of training batches .* is smaller than the logging interval",  # short runs log every step
    r"Precision .* is not supported by the model summary",
    r"The dirpath has changed from",  # test/validate of a checkpoint from another folder: nothing to restore
    r"Checkpoint directory .* exists and is not empty",  # our run-folder claim decides what may be there
    r"You're resuming from a checkpoint that ended before the epoch ended",  # our sampler resumes mid-epoch
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LIGHTNING_NOISE)


def quiet() -> None:
    """Filter warnings, and quiet transformers' loading; Lightning's log lines are filtered once it is imported
    (``quiet_lightning``).

    transformers is quieted through its documented environment variables, which DDP's worker processes
    inherit and which need no import of transformers (``--help`` stays fast); a value set outside wins.
    """
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for pattern, category, module in _DEPRECATIONS:
        warnings.filterwarnings("ignore", message=pattern, category=category, module=module)
    warnings.formatwarning = _one_line  # not the source line of the code that warned
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # the weight-loading report of every from_pretrained
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Loading weights", "Writing model shards"
    if "transformers" in sys.modules:  # imported already (nasty-train called from Python): the variables were read
        sys.modules["transformers"].utils.logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _one_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as the user should see it: ``nasty-train: warning: ...``, without the path and line of the code
    that raised it."""
    return f"nasty-train: warning: {message}\n"


def quiet_lightning() -> None:
    """Drop Lightning's noise lines at its log handlers (filters on a logger would miss its children's lines)."""
    import lightning.pytorch  # noqa: F401 - sets up the handlers

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropNoise) for f in handler.filters):
                handler.addFilter(_DropNoise())
