"""The model directory: the one place that names its files, reads its metadata and checks that its files belong
together.

``fit`` and ``export`` write a float model (``config.json``, ``model.safetensors``, the tokenizer's files,
``nasty_lightning.json``, and for a model of several columns, with casing or a layer mix ``heads.safetensors``,
``casing.safetensors`` and ``layer_mix.safetensors``, for one of lemmas ``lemma_lexicon.json``, with a card and
training curves); ``quantize`` writes an INT8 one (``model.onnx`` in place of the safetensors files).
``OWN_FILES`` is every name either writes: an export into an earlier one replaces those and keeps any other file
there (``outputs.atomic_dir``). A directory is read as untrusted input: ``check_weights`` refuses a
``config.json`` that does not describe the weights, before a model is built. This module imports no PyTorch and
no transformers.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from functools import partial
from pathlib import Path
from typing import Any

from nasty_lightning.errors import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENERATION_CONFIG_FILE = "generation_config.json"  # written by transformers' save_pretrained of some models
META_FILE = "nasty_lightning.json"  # the columns, the labels of the heads after the first, the window size
HEADS_FILE = "heads.safetensors"  # the heads after the first: {column}.weight and {column}.bias
CASING_FILE = "casing.safetensors"  # the casing embedding of a model trained with --model.casing true
CHARS_FILE = "chars.safetensors"  # the character encoder of a model trained with --model.chars true
# how a word becomes character ids (data.encoding.word_chars); a model records both and is refused with others
CHAR_IDS = 2048  # each character is 1 + its code point modulo 2047 (0: no character)
WORD_CHARS = 16  # a longer word keeps its first and last 8
CHARS_META = {"ids": CHAR_IDS, "length": WORD_CHARS}  # META_FILE's "chars": how the model read characters
LAYER_MIX_FILE = "layer_mix.safetensors"  # weights and scale of the layer mix (--model.layer_mix true)
LEXICON_FILE = "lemma_lexicon.json"  # the lemmas training gave each word (``labels.lemmas.LemmaLexicon``)
ONNX_FILE = "model.onnx"  # the encoder and every head of a quantized model, as one graph
CARD_FILE = "README.md"
CURVES_FILE = "training_curves.png"
QUANTIZATION = "quantization"  # the META_FILE entry of a quantized model: how, and what it measured
# Casing classes in id order (the rows of CASING_FILE); class 0 is no word at all: special tokens and padding.
CASINGS = ("none", "lower", "title", "upper", "mixed", "digits", "letters_digits", "other")
# How a model's heads that label sentences pool the encoder's states (META_FILE's "pooling"; ``modelling.pooling``).
POOLINGS = ("first", "mean")

# What the tokenizers of the encoders nasty-train fine-tunes write with save_pretrained: transformers' own
# files (tokenizer_config.json and the rest, its ``tokenization_utils_base`` constants) and the vocabularies
# their classes name in ``vocab_files_names`` (tests/test_model_dir.py checks the list against transformers).
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "vocab.txt",  # BERT, DistilBERT, ELECTRA
        "vocab.json",  # RoBERTa (with merges.txt)
        "merges.txt",
        "sentencepiece.bpe.model",  # XLM-R, CamemBERT
        "spiece.model",  # ALBERT
        "spm.model",  # DeBERTa-v2 and -v3
    }
)
FLOAT_FILES = (CONFIG_FILE, WEIGHTS_FILE, "tokenizer_config.json", META_FILE)  # a float model needs these
QUANTIZED_FILES = (ONNX_FILE, CONFIG_FILE, "tokenizer_config.json", META_FILE)  # a quantized one these
MODEL_FILES = {
    CONFIG_FILE, WEIGHTS_FILE, GENERATION_CONFIG_FILE, META_FILE, HEADS_FILE, CASING_FILE, LAYER_MIX_FILE, ONNX_FILE,
    LEXICON_FILE, CHARS_FILE,
}  # fmt: skip
OWN_FILES = frozenset(MODEL_FILES | {CARD_FILE, CURVES_FILE} | TOKENIZER_FILES)  # every name export or quantize writes

# Model types whose position table counts from after the padding id (fairseq's numbering): the first
# position a sequence uses is pad_token_id + 1, as transformers' embeddings of these models do.
_FROM_PADDING = {"roberta", "xlm-roberta", "camembert"}


def tokenizer_file_name(name: object, source: str) -> str:
    """``name`` if it is one of the ``TOKENIZER_FILES`` (a checkpoint's tokenizer files may hold nothing
    else: they are written into an export beside its own files), else ``UserError``."""
    if not isinstance(name, str) or name not in TOKENIZER_FILES:
        raise UserError(f"{source} names a file {name!r} that is not a tokenizer file; refusing it")
    return name


def read_json(path: Path) -> Any:
    """A JSON file of a model directory, or ``UserError`` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err.__class__.__name__})") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err.__class__.__name__})") from None


def read_meta(folder: Path) -> dict[str, Any]:
    """The folder's ``META_FILE``, checked for the entries tagging reads: label column, window size, heads,
    pooling, casing, the layer mix's size, and for multi-label heads ``multi_label`` and each label's threshold
    (``thresholds``)."""
    path = Path(folder) / META_FILE
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("label_column"), str):
        raise UserError(f"{path} names no label_column")
    max_length = meta.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
        raise UserError(f"{path} gives no whole number of at least 3 as max_length")
    heads = meta.get("heads", [])
    if not isinstance(heads, list) or not all(
        isinstance(h, dict)
        and isinstance(h.get("column"), str)
        and isinstance(h.get("labels"), list)
        and h["labels"]
        and all(isinstance(label, str) for label in h["labels"])
        for h in heads
    ):
        raise UserError(f"{path}: 'heads' must be a list of {{column, labels}} with the labels as strings")
    if meta.get("pooling", "first") not in POOLINGS:
        raise UserError(f"{path}: 'pooling' must be one of {', '.join(POOLINGS)}, not {meta['pooling']!r}")
    thresholds = meta.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        isinstance(t, list) and all(isinstance(x, float | int) and not isinstance(x, bool) and 0 < x < 1 for x in t)
        for t in thresholds.values()
    ):
        raise UserError(f"{path}: 'thresholds' must give columns lists of numbers between 0 and 1")
    if not isinstance(meta.get("multi_label", False), bool):
        raise UserError(f"{path}: 'multi_label' must be true or false")
    mix = meta.get("layer_mix")
    if mix is not None and (isinstance(mix, bool) or not isinstance(mix, int) or mix < 1):
        raise UserError(f"{path}: 'layer_mix' must be the number of hidden states the mix weighs, not {mix!r}")
    _check_transitions(path, meta)
    if "casing" in meta and meta["casing"] != list(CASINGS):
        raise UserError(f"{path}: the model was trained with other casing classes ({meta['casing']!r}) than {CASINGS}")
    if "chars" in meta and meta["chars"] != CHARS_META:
        raise UserError(f"{path}: the model reads characters otherwise ({meta['chars']!r}) than {CHARS_META}")
    return meta


def _check_transitions(path: Path, meta: dict[str, Any]) -> None:
    """``transitions`` (``--model.crf``): by column, ``start`` (a score per label) and ``follow`` (a row of as many
    scores per label), every score a finite number. Whether they fit the column's labels, the tagger checks."""
    transitions = meta.get("transitions", {})

    def scores(row: Any, n: int) -> bool:
        return isinstance(row, list) and len(row) == n and all(_finite(x) for x in row)

    if not isinstance(transitions, dict) or not all(
        isinstance(t, dict)
        and isinstance(t.get("start"), list)
        and scores(t["start"], len(t["start"]))
        and isinstance(t.get("follow"), list)
        and len(t["follow"]) == len(t["start"])
        and all(scores(row, len(t["start"])) for row in t["follow"])
        for t in transitions.values()
    ):
        raise UserError(f"{path}: 'transitions' must give a column a list of start scores and a square table of scores")


def _finite(x: Any) -> bool:
    return isinstance(x, float | int) and not isinstance(x, bool) and math.isfinite(x)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_lexicon(folder: Path) -> Any:
    """The folder's ``LEXICON_FILE`` as JSON (``None`` where there is none), for ``LemmaLexicon.from_dict``."""
    path = Path(folder) / LEXICON_FILE
    return read_json(path) if path.is_file() else None


def write_lexicon(folder: Path, lexicon: dict[str, Any]) -> None:
    """``LEXICON_FILE`` of a ``LemmaLexicon.to_dict``: one word to a line."""
    line = partial(json.dumps, ensure_ascii=False)
    words = ",\n".join(f"  {line(k)}: {line(v)}" for k, v in lexicon["lemmas"].items())
    text = f'{{"tag_column": {json.dumps(lexicon["tag_column"])}, "lemmas": {{\n{words}\n}}}}\n'
    (Path(folder) / LEXICON_FILE).write_text(text, encoding="utf-8")


def check_files(folder: Path, meta: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a quantized model rather than a float one (``meta`` is its ``META_FILE``, or
    empty), after checking that it has the files of that kind and none of the other's."""
    quantized = QUANTIZATION in meta or (Path(folder) / ONNX_FILE).exists()
    missing = [name for name in (QUANTIZED_FILES if quantized else FLOAT_FILES) if not (Path(folder) / name).is_file()]
    if missing:
        kind = "a quantized" if quantized else "an exported"
        raise UserError(f"{folder} is not {kind} model directory: missing {', '.join(missing)}")
    if quantized and QUANTIZATION not in meta:
        raise UserError(
            f"{folder} holds {ONNX_FILE} but its {META_FILE} records no quantization: the files do not belong "
            "together (quantize the model again)"
        )
    if quantized and (Path(folder) / WEIGHTS_FILE).exists():
        raise UserError(f"{folder} holds both {ONNX_FILE} and {WEIGHTS_FILE}: the files do not belong together")
    return quantized


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """The shape of every tensor of a safetensors file, from its header (the tensors are not read)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size)) if 2 <= size <= 100_000_000 else None
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a safetensors file")
    return {k: v["shape"] for k, v in header.items() if isinstance(v, dict) and isinstance(v.get("shape"), list)}


def _rows(shapes: dict[str, list[int]], suffix: str, axis: int = 0) -> int | None:
    """The size along ``axis`` of the one tensor whose name ends in ``suffix``, or None."""
    found = [shape for name, shape in shapes.items() if name == suffix or name.endswith("." + suffix)]
    return found[0][axis] if len(found) == 1 and len(found[0]) == 2 else None


def check_weights(folder: Path, max_length: int) -> None:
    """Refuse a directory whose ``config.json`` does not describe its weights (``model.safetensors``, where it
    has them) or cannot take windows of ``max_length`` subwords: number of labels, hidden size, vocabulary,
    layers, position table. Each mismatch is one line naming the file, before any model is built."""
    path = Path(folder) / CONFIG_FILE
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a JSON object")
    positions = raw.get("max_position_embeddings")
    if (Path(folder) / WEIGHTS_FILE).is_file():
        shapes = tensor_shapes(Path(folder) / WEIGHTS_FILE)
        layers = {m[1] for name in shapes if (m := re.search(r"(?:^|\.)layers?\.(\d+)\.", name))}
        id2label = raw.get("id2label")
        pairs = [  # what config.json says, and what the weights hold
            ("id2label names {} labels", len(id2label) if isinstance(id2label, dict) else None,
             "the classifier has {}", _rows(shapes, "classifier.weight")),
            ("hidden_size is {}", raw.get("hidden_size", raw.get("dim")),
             "the classifier reads {}", _rows(shapes, "classifier.weight", axis=1)),
            ("vocab_size is {}", raw.get("vocab_size"),
             "the word embeddings have {} rows", _rows(shapes, "embeddings.word_embeddings.weight")),
            ("max_position_embeddings is {}", positions,
             "the position table has {} rows", _rows(shapes, "embeddings.position_embeddings.weight")),
            ("num_hidden_layers is {}", raw.get("num_hidden_layers", raw.get("n_layers")),
             "the weights have {} layers", len(layers) or None),
        ]  # fmt: skip
        for said, expected, held, found in pairs:
            if expected is not None and found is not None and expected != found:
                raise UserError(f"{path} does not match {WEIGHTS_FILE}: {said.format(expected)}, {held.format(found)}")
    pad = raw.get("pad_token_id")
    first = pad + 1 if raw.get("model_type") in _FROM_PADDING and isinstance(pad, int) else 0
    if isinstance(positions, int) and max_length + first > positions:
        raise UserError(
            f"{Path(folder) / META_FILE}: max_length {max_length} is more than the {positions - first} positions "
            f"of the model ({path})"
        )


def snapshot(folder: Path) -> tuple:
    """What identifies the files of ``folder`` that a model is read from: the folder's identity and each of its
    ``OWN_FILES`` (inode, size, time). An export or quantize replaces the folder, and with it every one of them;
    a reader that sees the same snapshot before and after reading read one model, not a mix of two."""

    def identity(path: Path) -> tuple | None:
        try:
            s = os.stat(path)
        except OSError:
            return None
        return s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns

    return identity(folder), tuple(identity(Path(folder) / name) for name in sorted(OWN_FILES))
