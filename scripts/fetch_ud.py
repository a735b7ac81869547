"""Download a treebank's train/dev/test files: Universal Dependencies ones into data/ud/<code>/, Universal NER ones
(IOB2) wherever --output_dir says.

python scripts/fetch_ud.py UD_English-EWT en_ewt
python scripts/fetch_ud.py UniversalNER/UNER_English-EWT en_ewt --suffix iob2 --output_dir data/uner
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import auto_cli

from nasty_lightning.errors import UserError
from nasty_lightning.formats.fetch import fetch_treebank_file


def fetch_ud(
    treebank: str,
    code: str,
    output_dir: str = "data/ud",
    splits: tuple[str, ...] = ("train", "dev", "test"),
    suffix: str = "conllu",
) -> None:
    """Download <code>-ud-<split>.<suffix> from the treebank's public repository.

    Args:
        treebank: Repository name, e.g. UD_English-EWT, or owner/name, e.g. UniversalNER/UNER_English-EWT.
        code: Treebank code that prefixes its file names, e.g. en_ewt.
        output_dir: Files go to <output_dir>/<code>/.
        splits: Which files to fetch.
        suffix: conllu (UD), or iob2 (Universal NER).
    """
    for split in splits:
        path = fetch_treebank_file(treebank, Path(output_dir) / code / f"{code}-ud-{split}.{suffix}")
        print(path)


if __name__ == "__main__":
    try:
        auto_cli(fetch_ud, as_positional=True)
    except UserError as err:
        raise SystemExit(f"fetch_ud.py: error: {err}") from None
