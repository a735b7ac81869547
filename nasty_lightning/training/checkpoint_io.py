"""Checkpoint files written atomically (a kill while saving never leaves a truncated ``last.ckpt``) and read
as untrusted input (``weights_only``, with a clear error)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nasty_lightning.errors import UserError
from nasty_lightning.formats.untrusted import load_checkpoint

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
        except (OSError, RuntimeError) as err:
            reason = write_failure(err)
            if reason is None:
                raise
            raise UserError(
                f"cannot write the checkpoint {path} ({reason}); nothing saved before is lost: "
                f"{self._last_good(path.parent)}"
            ) from None
        finally:
            partial.unlink(missing_ok=True)
        self.last_saved = path, checkpoint.get("global_step", 0)

    def _last_good(self, folder: Path) -> str:
        """What is left to go on from: ``--ckpt_path last`` only where a ``last.ckpt`` is there to resume."""
        last = folder / RESUMABLE
        written = "no checkpoint of this run was written yet"
        if self.last_saved is not None:
            written = "the last checkpoint written is {} (step {})".format(*self.last_saved)
        if not last.is_file():
            again = "make room and start again" + (" with --overwrite true" if self.last_saved else "")
            return f"{written}; there is no {RESUMABLE} to resume from: {again}"
        if self.last_saved is None:
            written = f"{last} is from before this run"
        elif self.last_saved[0] != last:
            written += f", the last to resume from is {last}"
        return f"{written}; make room and resume with --ckpt_path last"

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        """Always ``weights_only``, whatever Lightning asks: a checkpoint never runs code."""
        return load_checkpoint(path, mmap=False)


def write_failure(err: BaseException) -> str | None:
    """Why a checkpoint could not be written (``No space left on device``), or None for an error that is no
    failed write. ``torch.save`` reports a short write as ``RuntimeError: [enforce fail at inline_container.cc]
    ... unexpected pos``, with the ``OSError`` of the file's write as its context."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError):
            return cause.strerror or str(cause)
        cause = cause.__cause__ or cause.__context__
    return str(err).splitlines()[0] if "inline_container.cc" in str(err) else None
