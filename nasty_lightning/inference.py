"""Tagging with an exported model directory: ``Tagger.load(DIR).tag(...)``.

A model directory may come from anywhere, so loading it never runs code from it: a configuration that
names model code (``auto_map``) or weights stored only as a pickle (``pytorch_model.bin``) are refused
(``nasty_lightning.untrusted.check_model_dir``), and weights are read from safetensors only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from nasty_lightning.batching import collate
from nasty_lightning.encoding import Window, encode, load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.untrusted import check_model_dir

META_FILE = "nasty_lightning.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", META_FILE)

# Words as UD English splits them: numbers whole (3.14, 2,000), clitics apart (ca n't, it 's),
# every punctuation or symbol character on its own, and runs of letters and digits.
_WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+|[^\w\s]", re.IGNORECASE)


def split_words(text: str) -> list[str]:
    """Split running text into words: punctuation, symbols and English clitics become words of their own."""
    return _WORD.findall(text)


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """The words of ``split_words`` with their start and end offsets in ``text``."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1, which would tag nothing."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {batch_size}")


def _read_meta(model_dir: Path) -> dict[str, Any]:
    path = model_dir / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("label_column"), str):
        raise UserError(f"{path} names no label_column")
    if isinstance(meta.get("max_length"), bool) or not isinstance(meta.get("max_length"), int):
        raise UserError(f"{path} gives no whole number as max_length")
    return meta


@dataclass
class Tagger:
    """A fine-tuned tagger: the model, its tokenizer and its labels, as ``export`` writes them."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    label_column: str
    max_length: int
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)

    @classmethod
    def load(cls, model_dir: str | Path, batch_size: int = 64) -> Tagger:
        """Load a model directory written by ``nasty-train export`` (or at the end of ``fit``), running no
        code from it."""
        check_batch_size(batch_size)
        model_dir = Path(model_dir)
        check_model_dir(model_dir)
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise UserError(f"{model_dir} is not an exported model directory: missing {', '.join(missing)}")
        meta = _read_meta(model_dir)
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                model_dir, use_safetensors=True, trust_remote_code=False
            ).eval()
        except (OSError, ValueError, SafetensorError) as err:
            reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0]
            raise UserError(f"cannot load the model in {model_dir} ({reason})") from None
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        tokenizer = load_tokenizer(str(model_dir))
        return cls(model, tokenizer, labels, meta["label_column"], meta["max_length"], batch_size)

    def tag(self, sentences: str | Sequence[str] | Sequence[Sequence[str]]) -> list[list[tuple[str, str]]]:
        """Tag text: one string, a list of strings (one sentence each), or a list of pre-split sentences.

        Returns one list of (word, tag) pairs per sentence, in the order given.
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        words = [split_words(s) if isinstance(s, str) else list(s) for s in sentences]
        return [list(zip(w, t, strict=True)) for w, t in zip(words, self.predict(words), strict=True)]

    def predict(self, sentences: list[list[str]], progress: bool = False) -> list[list[str]]:
        """The tag of every word of every sentence; long sentences are tagged window by window, and a word
        longer than a window by its first subwords.

        ``progress`` shows a progress bar on standard error (when it is a terminal).
        """
        tags: list[list[str]] = [[""] * len(words) for words in sentences]
        windows = encode(sentences, self.tokenizer, self.max_length, long_words="truncate")
        windows.sort(key=lambda w: len(w.input_ids))  # similar lengths together: little padding
        with tqdm(total=len(windows), unit="sent", disable=None if progress else True, desc="tagging") as bar:
            for chunk, predicted in self._batches(windows):
                for window, window_tags in zip(chunk, predicted, strict=True):
                    start = window.first_word
                    tags[window.sentence][start : start + len(window_tags)] = window_tags
                bar.update(len(chunk))
        return tags

    @torch.inference_mode()
    def _batches(self, windows: list[Window]) -> Iterator[tuple[list[Window], list[list[str]]]]:
        device = next(self.model.parameters()).device
        for i in range(0, len(windows), self.batch_size):
            chunk = windows[i : i + self.batch_size]
            batch = collate(chunk, self.tokenizer.pad_token_id)
            logits = self.model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            ids = logits.argmax(-1).cpu()
            yield (
                chunk,
                [
                    [self.labels[j] for j in row[mask].tolist()]
                    for row, mask in zip(ids, batch["word_mask"], strict=True)
                ],
            )
