"""File formats, read as untrusted input and written whole: CoNLL-U and NER files, atomic outputs, checkpoints
and model directories, where model files come from (presets, the hub, downloads). No model code."""
