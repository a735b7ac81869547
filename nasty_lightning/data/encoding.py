"""Subword encoding of pre-split words: first-subword labels, and windows for long sentences.

Every word gets exactly one label position: the first subword of the word. A word for which the
tokenizer yields no subword at all (a zero-width or control character) is given the unknown token,
so it still has a position. A sentence with more subwords than ``max_length`` allows is cut at
word boundaries into several windows, each encoded as its own sequence, so no word is dropped.
A single word with more subwords than a window holds is an error when training (the data needs a
larger ``max_length``); when tagging, it is cut to the subwords that fit, in a window of its own: its
tag comes from its first subword, which it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.model_dir import CASINGS, CHAR_IDS, WORD_CHARS
from nasty_lightning.formats.presets import PRESETS, locate_model
from nasty_lightning.formats.untrusted import check_model_dir, checkpoint_model_dir, is_checkpoint
from nasty_lightning.labels.heads import IGNORE, LEMMA, LabelSchema

if TYPE_CHECKING:  # transformers is imported where a tokenizer is loaded with it: tagging may not need it
    from transformers import PreTrainedTokenizerBase

    from nasty_lightning.formats.conllu import Sentence

__all__ = ["IGNORE", "Window", "WordTooLong", "encode", "encode_file", "load_tokenizer", "not_unicode"]


_CASING_CLASS = {name: i for i, name in enumerate(CASINGS)}


def word_chars(word: str) -> tuple[int, ...]:
    """The character ids of a word, case kept: each 1 + its code point modulo ``CHAR_IDS - 1``; a word longer
    than ``WORD_CHARS`` keeps its first and last ``WORD_CHARS // 2`` (the prefix and the suffix)."""
    ids = [1 + ord(c) % (CHAR_IDS - 1) for c in word]
    half = WORD_CHARS // 2
    return tuple(ids if len(ids) <= WORD_CHARS else ids[:half] + ids[-half:])


def casing_class(word: str) -> int:
    """The casing class of a word: lower (dog), title (Dog), upper (DOG, NASA), mixed (iPhone), digits
    (1990, 3.14), letters_digits (A4, 2nd), other (punctuation and symbols)."""
    letters = [c for c in word if c.isalpha()]
    has_digit = any(c.isdigit() for c in word)
    if not letters:
        return _CASING_CLASS["digits" if has_digit else "other"]
    if has_digit:
        return _CASING_CLASS["letters_digits"]
    if all(c.islower() for c in letters):
        return _CASING_CLASS["lower"]
    if all(c.isupper() for c in letters):
        return _CASING_CLASS["upper" if len(letters) > 1 else "title"]
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return _CASING_CLASS["title"]
    return _CASING_CLASS["mixed"]


@dataclass
class Window:
    """One encoded sequence: a whole sentence, or a run of its words when the sentence is too long."""

    input_ids: list[int]
    word_starts: list[int]
    labels: list  # per word: a label id, or a sequence of them (one per head)
    sentence: int
    first_word: int
    casing: list[int]  # per subword: its word's casing class (casing.py), 0 for special tokens
    # per subword: its word's character ids (``word_chars``), () for special tokens; empty: none given
    chars: list[tuple[int, ...]] = field(default_factory=list)


class WordTooLong(UserError):
    """A word with more subwords than a window holds; ``sentence`` and ``word`` are indices."""

    def __init__(self, message: str, sentence: int, word: int) -> None:
        super().__init__(message)
        self.sentence, self.word = sentence, word


def not_unicode(text: str) -> str | None:
    """Why a tokenizer cannot take ``text``, or None. Tokenizers (Rust) take valid Unicode only, and a Python
    string may hold a lone surrogate, as JSON's ``"\\ud800"`` decodes: text read from a file cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"character {err.start + 1} is a lone surrogate (U+{ord(text[err.start]):04X}), not Unicode text"
    return None


def load_tokenizer(model_name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a preset, hub id or local directory, ready for pre-split words.

    ``add_prefix_space=True`` is what byte-level BPE tokenizers (RoBERTa) need for pre-split input;
    without it they encode every word as if it were glued to the previous one. Tokenizers that do
    not use the option ignore it, and :func:`check_pretokenized` verifies the result. A hub model comes
    from the local Hugging Face cache when it is all there; an unreachable hub fails at once
    (:func:`~nasty_lightning.formats.presets.locate_model`).
    """
    path = locate_model(model_name)  # a local path, or a hub id the hub answers for; else a one-line UserError
    if is_checkpoint(path):  # a checkpoint carries its tokenizer files
        with checkpoint_model_dir(path) as (folder, _):
            return load_tokenizer(str(folder))
    check_model_dir(path, trust_remote_code)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot load the tokenizer of model {model_name!r} ({str(err).splitlines()[0]}); "
            f"give a Hugging Face hub id, a local model directory, or a preset: minilm, {', '.join(PRESETS)}"
        ) from None
    check_pretokenized(tokenizer, model_name)
    return tokenizer


def check_pretokenized(tokenizer: PreTrainedTokenizerBase, model_name: str) -> None:
    """Fail unless the tokenizer encodes a pre-split word as it encodes the same word in running text."""
    if not tokenizer.is_fast:
        raise UserError(f"model {model_name!r} has no fast tokenizer, which word alignment needs")
    text = tokenizer("hello world", add_special_tokens=False)
    split = tokenizer(["hello", "world"], is_split_into_words=True, add_special_tokens=False)
    in_text = [i for i, w in zip(text["input_ids"], text.word_ids(), strict=True) if w == 1]
    in_split = [i for i, w in zip(split["input_ids"], split.word_ids(), strict=True) if w == 1]
    if in_text != in_split:
        raise UserError(
            f"the tokenizer of {model_name!r} encodes pre-split words differently from running text "
            f"({tokenizer.convert_ids_to_tokens(in_split)} vs {tokenizer.convert_ids_to_tokens(in_text)}); "
            "byte-level BPE tokenizers must be loaded with add_prefix_space=True"
        )


def encode(
    sentences: list[list[str]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    labels: list[list[int]] | None = None,
    long_words: Literal["error", "truncate"] = "error",
    sentence_heads: Sequence[int] = (),
) -> list[Window]:
    """Encode sentences of words into windows of at most ``max_length`` subwords, specials included.

    ``labels`` holds one label id per word (``IGNORE`` where there is none), or one sequence of ids per
    word (one per head); without it every word is unlabelled. A single word with more subwords than a
    window holds raises ``WordTooLong`` with ``long_words="error"``; with ``"truncate"`` it keeps only the
    subwords that fit. The heads ``sentence_heads`` label the sentence: every word carries its label, and each
    window keeps it on its first word only, so that every window of a long text is one example of it.
    """
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if long_words == "truncate" and budget < 1:
        raise UserError(f"max_length={max_length} leaves no room for a word after the special tokens")
    batch = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False) if sentences else None
    windows = []
    for s, words in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, w in zip(batch["input_ids"][s], batch.word_ids(s), strict=True):
            pieces[w].append(token_id)
        word_labels = labels[s] if labels is not None else [IGNORE] * len(words)
        start, ids, starts, casing, chars = 0, [], [], [], []
        for w, word_pieces in enumerate(pieces):
            word_pieces = word_pieces or [tokenizer.unk_token_id]
            if len(word_pieces) > budget and long_words == "truncate":
                word_pieces = word_pieces[:budget]  # fills a window: the words around it go to others
            elif len(word_pieces) > budget:
                raise WordTooLong(
                    f"the word {words[w]!r} has {len(word_pieces)} subwords, more than max_length={max_length} "
                    f"leaves room for ({budget} after the special tokens); raise --data.max_length",
                    sentence=s,
                    word=w,
                )
            if len(ids) + len(word_pieces) > budget:
                window_labels = _first_word_only(word_labels[start:w], sentence_heads)
                windows.append(_window(prefix, suffix, ids, starts, casing, chars, window_labels, s, start))
                start, ids, starts, casing, chars = w, [], [], [], []
            starts.append(len(ids))
            ids.extend(word_pieces)
            casing.extend([casing_class(words[w])] * len(word_pieces))
            chars.extend([word_chars(words[w])] * len(word_pieces))
        window_labels = _first_word_only(word_labels[start:], sentence_heads)
        windows.append(_window(prefix, suffix, ids, starts, casing, chars, window_labels, s, start))
    return windows


def _first_word_only(labels: list, heads: Sequence[int]) -> list:
    """A window's word labels with the ``heads``' ids (a sentence's label) kept on its first word only."""
    if not heads or not labels:
        return labels
    return [labels[0], *(tuple(IGNORE if h in heads else i for h, i in enumerate(ids)) for ids in labels[1:])]


def _window(prefix, suffix, ids, starts, casing, chars, labels, sentence, first_word) -> Window:
    """A window of the subwords ``ids`` between the special tokens (word starts counted from the first)."""
    specials = [0] * len(prefix), [0] * len(suffix)
    return Window(
        prefix + ids + suffix,
        [len(prefix) + i for i in starts],
        labels,
        sentence,
        first_word,
        specials[0] + casing + specials[1],
        [()] * len(prefix) + chars + [()] * len(suffix),
    )


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one sequence (``[CLS]``, ``[SEP]``)."""
    content = tokenizer(["hello"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    full = tokenizer(["hello"], is_split_into_words=True)["input_ids"]
    for start in range(len(full) - len(content) + 1):
        if full[start : start + len(content)] == content:
            return full[:start], full[start + len(content) :]
    raise UserError("cannot tell where the tokenizer puts its special tokens")


def encode_file(
    path: str, sentences: list[Sentence], schema: LabelSchema, tokenizer: Any, max_length: int
) -> tuple[list[Window], dict[str, Any]]:
    """The windows of a file's sentences, with every word's label ids, and what the file holds: its sentences,
    words, labels the vocabularies lack by column, and words with a lemma (for a lemma head)."""
    labels, unknown = schema.label_ids(path, sentences)
    try:
        windows = encode(
            [s.words for s in sentences], tokenizer, max_length, labels, sentence_heads=schema.sentence_heads
        )
    except WordTooLong as err:
        raise DataError(path, sentences[err.sentence].word_lines[err.word], str(err)) from None
    info = {
        "sentences": len(sentences),
        "words": sum(len(s.words) for s in sentences),
        "unknown_labels": {column: dict(counts) for column, counts in unknown.items() if counts},
    }
    if any(h.is_lemma for h in schema):
        info["lemmas"] = sum(1 for s in sentences for v in s.labels(LEMMA) if v is not None)
    return windows, info


def file_notes(path: str, info: dict[str, Any], windows: list[Window], max_length: int) -> tuple[list[str], list[str]]:
    """What a user should know of an encoded file (``encode_file``'s ``info``): warnings (labels training never
    saw, lemmas no known edit script reaches) and notes (words without a lemma, sentences split into windows)."""
    warnings, notes = [], []
    for column, unknown in info["unknown_labels"].items():
        if column == LEMMA:
            missed = sum(unknown.values())
            warnings.append(
                f"{path}: {missed} of {info['lemmas']} lemmas ({missed / info['lemmas']:.2%}) need an edit "
                "script not seen in training; the model cannot produce them, and they are scored as wrong"
            )
        else:
            warnings.append(
                f"{path}: {sum(unknown.values())} words carry {column} labels not seen in training "
                f"({', '.join(sorted(unknown))}); they are left out of the loss and scored as wrong"
            )
    if info.get("lemmas", info["words"]) < info["words"]:
        notes.append(
            f"{path}: words without a lemma (_): {info['words'] - info['lemmas']}; they are left out of the lemma "
            "loss and of val_lemma (eval and the UD scorer count them as right)"
        )
    n_long = len({w.sentence for w in windows if w.first_word > 0})
    if n_long:
        notes.append(
            f"{path}: {n_long} sentences longer than max_length={max_length} subwords "
            "were split into windows (every word is still labelled)"
        )
    return warnings, notes
