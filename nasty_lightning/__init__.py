"""nasty-lightning: fine-tune transformer encoders on CoNLL-U treebanks and NER files."""

__version__ = "0.1.0"

from nasty_lightning.inference import Tagger  # noqa: E402

__all__ = ["Tagger", "__version__"]
