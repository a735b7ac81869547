"""Downloading Universal Dependencies treebanks from their public repositories."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from nasty_lightning.errors import UserError

UD_RAW = "https://raw.githubusercontent.com/UniversalDependencies/{treebank}/master/{file}"


def fetch_treebank_file(treebank: str, path: str | Path) -> Path:
    """Download one file of a UD treebank (``UD_English-EWT``, file ``en_ewt-ud-train.conllu``) to ``path``.

    The file is written to a temporary name first, so an interrupted download leaves nothing behind.
    """
    path = Path(path)
    url = UD_RAW.format(treebank=treebank, file=path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            out.write(response.read())
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{path} is missing and could not be downloaded from {url} ({getattr(err, 'reason', err)}). "
            f"Put the file there, or point --data.train_file / --data.val_file / --data.test_file at your copy."
        ) from None
    partial.replace(path)
    return path
