"""Files the tool did not write itself: checkpoints and model directories, read without running code.

Whatever their origin, these files never choose what code runs or where the tool writes:

- Checkpoints load with ``weights_only`` (plain tensors and data; a pickle of anything else is refused).
- Names of files to write (a checkpoint's tokenizer files) must be names a tokenizer writes
  (``model_dir.TOKENIZER_FILES``): no folder part, no ``..``, and none of the model's own files.
- Model configurations must not name model code (``auto_map``), and model directories must hold their
  weights as safetensors, not as pickles (``pytorch_model.bin``), which can run code when loaded.
  ``trust_remote_code`` comes only from what the user types, never from a file.

A checkpoint of ``nasty-train fit`` carries its encoder's configuration and tokenizer files, so it is
a model source of its own (``checkpoint_model_dir``): ``test --ckpt_path`` and warm starts need no
base model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import CONFIG_FILE, read_json, tokenizer_file_name

CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_KEYS = ("state_dict", "hf_config", "tokenizer_files", "TaggingDataModule")
PICKLED_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth", "*.pkl", "*.ckpt")
CODE_CONFIGS = (CONFIG_FILE, "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def is_checkpoint(name: str) -> bool:
    """Whether a model name is a checkpoint file (``RUN/checkpoints/best.ckpt``) rather than a model."""
    return name.endswith(CHECKPOINT_SUFFIX) and Path(name).is_file()


def load_checkpoint(ckpt_path: str | Path, mmap: bool = True) -> dict[str, Any]:
    """A nasty-lightning checkpoint, loaded as plain tensors and data (``weights_only``: no code runs).

    With ``mmap``, tensors are read from the file when used, so the optimizer state costs no memory; a run
    that resumes training loads without it, as it changes the tensors in place.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        reason = "an empty file" if path.stat().st_size == 0 else err.__class__.__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason}){_intact_beside(path)}") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a nasty-lightning checkpoint (it holds a {type(ckpt).__name__})")
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise UserError(f"{path} is not a nasty-lightning checkpoint: missing {', '.join(missing)}")
    check_config(ckpt["hf_config"], f"checkpoint {path}")
    if not isinstance(ckpt["tokenizer_files"], dict):
        raise UserError(f"checkpoint {path}: its tokenizer files are not a mapping of names to contents")
    for name, content in ckpt["tokenizer_files"].items():
        tokenizer_file_name(name, f"checkpoint {path}")
        if not isinstance(content, bytes):
            raise UserError(f"checkpoint {path}: its tokenizer file {name} holds no bytes")
    return ckpt


def _intact_beside(path: Path) -> str:
    """``; intact checkpoints beside it: ...`` naming the other checkpoints of its folder that load."""
    intact = []
    for other in sorted(path.parent.glob(f"*{CHECKPOINT_SUFFIX}")):
        if other == path:
            continue
        try:
            torch.load(other, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001, S112 - only the readable ones are named
            continue
        intact.append(other.name)
    return f"; intact checkpoints beside it: {', '.join(intact)}" if intact else ""


def check_config(config: object, source: str) -> None:
    """Refuse a model configuration that names model code (``auto_map``) or is not a mapping."""
    if not isinstance(config, dict):
        raise UserError(f"{source}: the model configuration is not a JSON object")
    if "auto_map" in config:
        raise UserError(
            f"{source}: the model configuration names model code (auto_map); nasty-train does not run code "
            "from files (for a hub model you trust, give it by name with --model.trust_remote_code true)"
        )


def check_model_dir(path: str | Path, trust_remote_code: bool = False) -> None:
    """Refuse a local model directory whose loading could run code: pickled weights without safetensors,
    or a configuration naming model code while ``trust_remote_code`` is off. Other names pass (hub ids)."""
    path = Path(path)
    if not path.is_dir():
        return
    if not any(path.glob("*.safetensors")) and any(next(path.glob(p), None) for p in PICKLED_WEIGHTS):
        raise UserError(
            f"{path} holds its weights as a pickle (pytorch_model.bin), which can run code when loaded; "
            "nasty-train reads safetensors only: convert them (model.save_pretrained(dir) writes safetensors)"
        )
    if trust_remote_code:
        return
    for name in CODE_CONFIGS:
        file = path / name
        if file.is_file():
            check_config(read_json(file), str(file))


@contextmanager
def checkpoint_model_dir(ckpt_path: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A temporary model directory with a checkpoint's encoder config and tokenizer files (no weights),
    and the checkpoint itself (tensors mapped from the file)."""
    ckpt = load_checkpoint(ckpt_path)
    with tempfile.TemporaryDirectory(prefix="nasty-ckpt-") as tmp:
        folder = Path(tmp)
        (folder / CONFIG_FILE).write_text(json.dumps(ckpt["hf_config"]))
        for name, content in ckpt["tokenizer_files"].items():  # names checked by load_checkpoint
            (folder / name).write_bytes(content)
        check_model_dir(folder)
        yield folder, ckpt
