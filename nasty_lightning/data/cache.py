"""Encoded datasets cached on disk, so that a second run on the same data starts training at once.

The key covers everything the encoding depends on: the file's bytes, the tokenizer (its full
serialisation), ``max_length``, the label vocabulary and column, and the cache format. Files are
written to a temporary name and renamed, so a killed run never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from nasty_lightning.data.batching import word_labels
from nasty_lightning.data.encoding import Window

# 2: labels are (words, heads); 3: casing classes; 4: labels in int64 (multi-label bit masks); 5: character ids
FORMAT = 5


def cache_key(
    path: str, tokenizer: PreTrainedTokenizerBase, max_length: int, labels: Any, column: str | list[str]
) -> str:
    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    digest.update(json.dumps([FORMAT, max_length, labels, column, type(tokenizer).__name__]).encode("utf-8"))
    return digest.hexdigest()[:40]


def save_windows(file: Path, windows: list[Window], info: dict[str, Any]) -> None:
    """Store windows as flat int32 tensors with offsets (compact, and loadable with ``weights_only``)."""
    flat = {
        "info": info,
        "input_ids": torch.tensor([i for w in windows for i in w.input_ids], dtype=torch.int32),
        "id_counts": torch.tensor([len(w.input_ids) for w in windows], dtype=torch.int32),
        "casing": torch.tensor([c for w in windows for c in w.casing], dtype=torch.int8),
        # each subword's character ids: how many (0 for special tokens), then all of them in a row
        "char_counts": torch.tensor([len(c) for w in windows for c in w.chars], dtype=torch.int8),
        "chars": torch.tensor([i for w in windows for c in w.chars for i in c], dtype=torch.int16),
        "word_starts": torch.tensor([i for w in windows for i in w.word_starts], dtype=torch.int32),
        # int64: a multi-label head's label id is a bit mask of up to 62 labels
        "labels": torch.cat([word_labels(w) for w in windows]) if windows else torch.zeros(0, 1, dtype=torch.long),
        "word_counts": torch.tensor([len(w.word_starts) for w in windows], dtype=torch.int32),
        "sentence": torch.tensor([w.sentence for w in windows], dtype=torch.int32),
        "first_word": torch.tensor([w.first_word for w in windows], dtype=torch.int32),
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(f"{file.name}.{os.getpid()}.part")
    torch.save(flat, partial)
    os.replace(partial, file)


def load_windows(file: Path) -> tuple[list[Window], dict[str, Any]]:
    flat = torch.load(file, weights_only=True)
    ids, casing = flat["input_ids"].tolist(), flat["casing"].tolist()
    starts, labels = flat["word_starts"].tolist(), flat["labels"].tolist()
    all_chars, chars, char_at = flat["chars"].tolist(), [], 0
    for n in flat["char_counts"].tolist():
        chars.append(tuple(all_chars[char_at : char_at + n]))
        char_at += n
    windows, at, word_at = [], 0, 0
    for n_ids, n_words, sentence, first in zip(
        flat["id_counts"].tolist(),
        flat["word_counts"].tolist(),
        flat["sentence"].tolist(),
        flat["first_word"].tolist(),
        strict=True,
    ):
        windows.append(
            Window(
                ids[at : at + n_ids],
                starts[word_at : word_at + n_words],
                labels[word_at : word_at + n_words],
                sentence,
                first,
                casing[at : at + n_ids],
                chars[at : at + n_ids],
            )
        )
        at, word_at = at + n_ids, word_at + n_words
    return windows, flat["info"]
