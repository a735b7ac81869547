"""Checkpoint files written atomically (a kill while saving never leaves a truncated ``last.ckpt``) and read
as untrusted input (``weights_only``, with a clear error)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nasty_lightning.errors import UserError
from nasty_lightning.untrusted import load_checkpoint

RESUMABLE = "last.ckpt"
TRAINING_STATE = ("optimizer_states", "lr_schedulers")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync it, then rename it over the target.

    A rename within one file system is atomic: readers see the old file or the new one, never a part.
    Only ``last.ckpt``, the one a run resumes from, keeps the optimizer and learning-rate schedule state;
    ``best.ckpt`` and ``epoch=N.ckpt`` serve ``test``, ``export`` and warm starts, which need the weights
    (a third of a full checkpoint with AdamW).
    A write that fails (a full disk) ends the run with one line naming the last checkpoint written whole.
    """

    def __init__(self) -> None:
        self.last_saved: tuple[Path, int] | None = None  # the last checkpoint written whole, and its step

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        if path.name != RESUMABLE:
            checkpoint = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except OSError as err:
            raise UserError(
                f"cannot write the checkpoint {path} ({err.strerror or err}); nothing saved before is lost: "
                f"{self._last_good(path.parent)}"
            ) from None
        finally:
            partial.unlink(missing_ok=True)
        self.last_saved = path, checkpoint.get("global_step", 0)

    def _last_good(self, folder: Path) -> str:
        if self.last_saved is not None:
            path, step = self.last_saved
            return f"the last checkpoint written is {path} (step {step}); make room and resume with --ckpt_path last"
        if (folder / RESUMABLE).is_file():
            return f"{folder / RESUMABLE} is from before this run; make room and resume with --ckpt_path last"
        return "no checkpoint of this run was written yet; make room and start again"

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        """Always ``weights_only``, whatever Lightning asks: a checkpoint never runs code."""
        return load_checkpoint(path, mmap=False)
