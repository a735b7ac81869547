"""How tagging runs on this machine: its threads, the weights' precision, the batch size (``tag``, ``eval``,
``serve``, ``quantize`` and ``Tagger``)."""

from __future__ import annotations

import os

import torch

from nasty_lightning.errors import UserError
from nasty_lightning.modelling.precision import cpu_has_native_bf16

MAX_DEFAULT_THREADS = 4  # --threads left out: at most this many, so a shared machine keeps cores for others
PRECISIONS = ("float32", "bf16", "auto")


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1, which would tag nothing."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {batch_size}")


def default_threads() -> int:
    """Threads for tagging when none are asked for: the cores this process may use, at most
    ``MAX_DEFAULT_THREADS`` (batch-of-one latency gains little beyond that on an encoder this size)."""
    return max(1, min(MAX_DEFAULT_THREADS, len(os.sched_getaffinity(0))))


def inference_dtype(precision: str) -> torch.dtype:
    """The weights' type for ``--precision``: float32; bf16 (bfloat16); auto, bfloat16 where the CPU computes
    it natively (``precision.cpu_has_native_bf16``) and float32 elsewhere, where it would be emulated and slower."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def use_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads for this process (``None``: ``default_threads()``); returns the number."""
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"--threads must be a positive whole number, got {threads}")
    torch.set_num_threads(threads)
    return threads
