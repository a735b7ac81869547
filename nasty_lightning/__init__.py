"""nasty-lightning: fine-tune transformer encoders on CoNLL-U treebanks and NER files.

The Python API, each name imported on first use (``nasty-train --help`` should not wait for PyTorch):

- ``TaggingDataModule``: the training, validation and test files as batches (a ``LightningDataModule``).
- ``TokenTagger``: a pretrained encoder with one head per predicted column (a ``LightningModule``).
- ``export``: a checkpoint of either, written as a model directory.
- ``Tagger``: a model directory, loaded to tag text (``Tagger.classify`` labels texts).
- ``ZeroShotClassifier``: a pretrained sentence encoder that labels texts without training.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
_API = {
    "Tagger": "nasty_lightning.inference.tagger",
    "TaggingDataModule": "nasty_lightning.data.datamodule",
    "TokenTagger": "nasty_lightning.training.module",
    "export": "nasty_lightning.inference.export",
    "ZeroShotClassifier": "nasty_lightning.inference.zero_shot",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'nasty_lightning' has no attribute {name!r}")
