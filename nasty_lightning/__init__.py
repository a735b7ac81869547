"""nasty-lightning: fine-tune transformer encoders on CoNLL-U treebanks and NER files."""

__version__ = "0.1.0"
