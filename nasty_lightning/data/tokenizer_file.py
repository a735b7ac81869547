"""A model directory's tokenizer without transformers: its ``tokenizer.json`` read by the ``tokenizers`` library.

Importing transformers takes about 0.8 s, a third of the start of ``nasty-train tag`` (docs/benchmarks.md). A
directory written by ``fit``, ``export`` or ``quantize`` holds the fast tokenizer as transformers saved it:
``tokenizer.json`` is its whole pipeline (normalizer, pre-tokenizer, vocabulary, special-token template), which
transformers' fast tokenizers hand to the same library. ``TokenizerFile`` has what encoding uses of a
transformers tokenizer, and ``inference.Tagger`` loads it where a directory's tokenizer class is one whose
encoding transformers leaves to ``tokenizer.json`` alone (tests/test_tokenizer_file.py compares the two on the
three kinds of tokenizer); otherwise, and where the file cannot be read, transformers loads the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Encoding, Tokenizer

# tokenizer_config.json's tokenizer_class, for which transformers' fast tokenizer encodes with tokenizer.json as it is
PLAIN_CLASSES = {
    f"{name}{fast}"
    for name in ("Bert", "DistilBert", "Roberta", "XLMRoberta")
    for fast in ("Tokenizer", "TokenizerFast")
} | {"PreTrainedTokenizerFast", "TokenizersBackend"}


class Encoded:
    """What a call returns, as transformers' ``BatchEncoding``: ``["input_ids"]`` and ``word_ids(i)``."""

    def __init__(self, encodings: list[Encoding], batched: bool) -> None:
        self._ids = [e.ids for e in encodings]  # each read of ``ids`` or ``word_ids`` builds a new list
        self._word_ids = [e.word_ids for e in encodings]
        self._batched = batched

    def __getitem__(self, key: str) -> list:
        if key != "input_ids":
            raise KeyError(key)
        return self._ids if self._batched else self._ids[0]

    def word_ids(self, index: int = 0) -> list[int | None]:
        return self._word_ids[index]


class TokenizerFile:
    """The tokenizer of ``folder`` (its ``tokenizer.json`` and ``tokenizer_config.json``)."""

    is_fast = True

    def __init__(self, folder: Path, config: dict[str, Any] | None = None) -> None:
        """``config``: the folder's ``tokenizer_config.json`` where the caller has read it already."""
        self.folder = Path(folder)
        self.backend = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.backend.no_truncation()  # as transformers does before every call made without truncation or padding
        self.backend.no_padding()
        if config is None:
            config = json.loads((self.folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.config = config
        self.unk_token_id = self._token_id(self.config.get("unk_token"))
        self.pad_token_id = self._token_id(self.config.get("pad_token"))

    @classmethod
    def load(cls, folder: Path) -> TokenizerFile | None:
        """The folder's tokenizer, or None where it is not one of ``PLAIN_CLASSES`` or its files do not load."""
        try:
            config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict) or config.get("tokenizer_class") not in PLAIN_CLASSES:
                return None
            return cls(folder, config)
        except Exception:  # OSError, ValueError, or the plain Exception the tokenizers library raises on a bad file
            return None

    def _token_id(self, token: Any) -> int | None:
        content = token.get("content") if isinstance(token, dict) else token
        return self.backend.token_to_id(content) if isinstance(content, str) else None

    def __call__(self, text: Any, is_split_into_words: bool = False, add_special_tokens: bool = True) -> Encoded:
        """Encode one sequence (a string, or with ``is_split_into_words`` a list of words) or a list of them."""
        batched = isinstance(text, list | tuple) and (
            not is_split_into_words or (len(text) > 0 and isinstance(text[0], list | tuple))
        )
        items = list(text) if batched else [text]
        encodings = self.backend.encode_batch(
            items, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens
        )
        return Encoded(encodings, batched)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str | None]:
        return [self.backend.id_to_token(i) for i in ids]

    def save_pretrained(self, out: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``out``."""
        self.backend.save(str(Path(out) / "tokenizer.json"))
        (Path(out) / "tokenizer_config.json").write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")


def model_dir_tokenizer(folder: Path) -> Any:
    """The tokenizer of a model directory: a ``TokenizerFile`` where it is one of ``PLAIN_CLASSES`` and encodes
    pre-split words as transformers would, else transformers' own (``encoding.load_tokenizer``)."""
    from nasty_lightning.data.encoding import check_pretokenized, load_tokenizer
    from nasty_lightning.errors import UserError

    tokenizer = TokenizerFile.load(folder)
    if tokenizer is not None:
        try:
            check_pretokenized(tokenizer, str(folder))
            return tokenizer
        except UserError:
            pass
    return load_tokenizer(str(folder))
