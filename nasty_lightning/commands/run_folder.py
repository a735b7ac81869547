"""The run folder of ``fit`` (``--trainer.default_root_dir``): one run at a time holds it, a new run replaces an
earlier one only when told to (and only once everything else is checked), and a resume continues the folder's own
run from its ``last.ckpt``."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nasty_lightning.errors import UserError
from nasty_lightning.formats.untrusted import load_checkpoint

TENSORBOARD_DIR = "tensorboard"
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml", TENSORBOARD_DIR)  # the logs a run writes in its folder
LOCK_FILE = ".lock"


def check_resume(ckpt_path: str, last: Path) -> None:
    """``fit --ckpt_path`` continues the run folder's own run from its ``last.ckpt``, and nothing else."""
    if ckpt_path != "last" and Path(ckpt_path).resolve() != last.resolve():
        raise UserError(
            f"fit --ckpt_path resumes the run in --trainer.default_root_dir from its last.ckpt: give --ckpt_path "
            f"last. To start a new run from the weights of {ckpt_path}, give it as the model in a new folder: "
            f"--model.model_name {ckpt_path} (a warm start)"
        )
    if not last.is_file():
        raise UserError(f"--ckpt_path last: there is no {last} to resume")
    load_checkpoint(last)  # a clear error for a truncated or unsafe file, naming the intact ones beside it


@contextmanager
def claim_run_folder(root: Path, checkpoints: Path, resume: bool, overwrite: bool) -> Iterator[None]:
    """Hold ``root`` for this run while it lasts, and refuse to start a new run over an earlier one unless
    resuming it or told to overwrite it.

    The claim is an exclusive ``flock`` on ``root/.lock``: a second ``fit`` on the same folder is refused at
    once, and the kernel releases the lock when the process ends, however it ends, so a killed run leaves
    nothing stuck. Checkpoint files that a killed write left half-written (``.*.part``) are removed.
    """
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise UserError(
                f"{root} is in use by another nasty-train fit (process {holder}); wait for it to end, "
                "or choose another --trainer.default_root_dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        for partial in checkpoints.glob(".*.part"):
            partial.unlink()
        saved, _ = earlier_run(root, checkpoints)
        if saved and not resume and not overwrite:
            raise UserError(
                f"{root} already holds a run ({saved[0]}); resume it with --ckpt_path last, replace it with "
                "--overwrite true, or choose another --trainer.default_root_dir"
            )
        yield
    finally:
        lock.close()  # releases the lock


def earlier_run(root: Path, checkpoints: Path) -> tuple[list[Path], list[Path]]:
    """What a new run in ``root`` replaces: an earlier run's checkpoints and exported model (kept unless told
    to overwrite them), and its logs (those of a run stopped before its first checkpoint go without asking)."""
    saved = sorted(checkpoints.glob("*.ckpt")) + ([root / "model"] if (root / "model").is_dir() else [])
    return saved, [path for name in RUN_FILES if (path := root / name).exists()]


def remove(paths: list[Path]) -> None:
    """Delete an earlier run's files and folders (``earlier_run``), once the new run is checked."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check_model_outside(model_name: str, replaced: list[Path]) -> None:
    """Refuse to start from a model that the new run deletes: a checkpoint or the model of the run it replaces."""
    source = Path(model_name).resolve()  # presets and hub ids are no path in a run folder
    inside = next((p for p in replaced if source.is_relative_to(p.resolve())), None)
    if inside is not None:
        raise UserError(
            f"--model.model_name {model_name} is part of the run that --overwrite true deletes ({inside}); "
            "copy it elsewhere first, or start the new run in another --trainer.default_root_dir"
        )
