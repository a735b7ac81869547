"""Downloading a treebank's own data files from its public repository: Universal Dependencies treebanks
(``UD_English-EWT``) and Universal NER ones (``UniversalNER/UNER_English-EWT``)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from nasty_lightning.errors import UserError

RAW = "https://raw.githubusercontent.com/{repository}/HEAD/{file}"  # HEAD: the repository's default branch
UD_OWNER = "UniversalDependencies"  # of a treebank named without its owner
# The only names fetched: a treebank's own files, <code>-ud-<split>.conllu (UD) or .iob2 (Universal NER); any
# other name (a typo in --data.train_file) is a missing file, not a download.
TREEBANK_FILE = re.compile(r"[a-z]{2,3}_[a-z0-9]+-ud-(train|dev|test)\.(conllu|iob2)")


def repository(treebank: str) -> str:
    """``owner/name`` of a treebank: ``UniversalNER/UNER_English-EWT`` as given, ``UD_English-EWT`` under UD's owner."""
    return treebank if "/" in treebank else f"{UD_OWNER}/{treebank}"


def fetch_treebank_file(treebank: str, path: str | Path) -> Path:
    """Download one of the treebank's own files (``en_ewt-ud-train.conllu`` of ``UD_English-EWT``) to ``path``.

    The file is written to a temporary name first, so an interrupted download leaves nothing behind.
    """
    path = Path(path)
    if not TREEBANK_FILE.fullmatch(path.name):
        raise UserError(
            f"{path} does not exist (only a treebank's own files, such as en_ewt-ud-train.conllu, are downloaded "
            f"from {treebank}); check the name, or point --data.train_file / --data.val_file at your copy"
        )
    url = RAW.format(repository=repository(treebank), file=path.name)
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
