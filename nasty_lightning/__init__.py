"""nasty-lightning: fine-tune transformer encoders on CoNLL-U treebanks and NER files."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tagger", "__version__"]


def __getattr__(name: str) -> Any:
    """``Tagger`` is imported on first use: ``nasty-train --help`` should not wait for PyTorch."""
    if name == "Tagger":
        from nasty_lightning.inference.tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'nasty_lightning' has no attribute {name!r}")
