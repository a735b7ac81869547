"""Heads: what a model predicts for one column, with the labels it knows.

A model has one head per predicted column, all on one shared encoder. A head knows its column, turns the
column's values into label ids for training (``encode``) and ids back into values for tagging (``decode``),
and names its validation metric. ``upos``, ``xpos``, ``deprel``, ``feats`` (the whole FEATS string is one
label, as UDPipe 2 does) and ``ner`` are classes; ``lemma`` is predicted as an edit script from the form
(``nasty_lightning.labels.lemmas``), applied to the word when tagging.

Label ids: ``LabelVocab`` owns them, and the one extra id, ``unseen``, that stands for a value training
never saw: never predicted, so always counted wrong, and left out of the loss. This module imports no
PyTorch: the data, the Lightning module, export and the tagger all use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from nasty_lightning.errors import UserError
from nasty_lightning.labels.lemmas import apply_script, check_script, edit_script

IGNORE = -100  # a word without a label: no loss, no score
TAG_COLUMNS = ("upos", "xpos", "feats")  # AllTags, as the UD scorer defines it: these all right for a word
LEMMA = "lemma"
NER = "ner"
ALLTAGS = "alltags"
FEATS = "feats"
# Columns no head predicts: ``tag`` writes a column's predictions over it, and these hold the words and
# their ids, or (MISC) what else is known of a word, entities included.
NOT_PREDICTED = {
    "id": "the word ids",
    "form": "the words",
    "head": "word ids",
    "deps": "word ids",
    "misc": "SpaceAfter, NER= and other notes",
}
# The features the UD scorer (CoNLL 2018 shared task, udtools' udeval) compares in UFeats and AllTags;
# the others (Typo, Style, ExtPos, NumForm, language-specific ones) it ignores.
UNIVERSAL_FEATURES = frozenset(
    "PronType NumType Poss Reflex Foreign Abbr Gender Animacy Number Case Definite Degree VerbForm Mood Tense "
    "Aspect Voice Evident Polarity Person Polite".split()
)


@dataclass(frozen=True)
class LabelVocab:
    """The labels of one head, in id order."""

    labels: tuple[str, ...]

    @classmethod
    def of(cls, values: Iterable[str | None]) -> LabelVocab:
        """The sorted set of ``values`` (``None`` is no value)."""
        return cls(tuple(sorted({v for v in values if v is not None})))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def unseen(self) -> int:
        """The id of every value not in the vocabulary."""
        return len(self.labels)

    def __contains__(self, value: object) -> bool:
        return value in self._ids

    def encode(self, value: str | None) -> int:
        if value is None:
            return IGNORE
        return self._ids.get(value, self.unseen)

    def decode(self, label_id: int) -> str:
        return self.labels[label_id]

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


@dataclass(frozen=True)
class Head:
    """One predicted column and its label vocabulary."""

    column: str
    vocab: LabelVocab

    @property
    def is_lemma(self) -> bool:
        return self.column == LEMMA

    @property
    def needs_every_value(self) -> bool:
        """Whether a training file must give every word a value. Not lemmas: UD writes ``_`` for a word
        without one (the parts of a word split by a typo, ``goeswith``), which training leaves out."""
        return not self.is_lemma

    def targets(self, words: Sequence[str], values: Sequence[str | None]) -> list[str | None]:
        """What the head learns for each word, given the column's values (``None``: no value): the value
        itself, or for lemmas the edit script from the word to its lemma."""
        if self.is_lemma:
            return [None if v is None else edit_script(w, v) for w, v in zip(words, values, strict=True)]
        return list(values)

    def check(self, source: str) -> None:
        """Raise ``UserError`` at a label this head cannot use or ``tag`` could not write: a lemma head's labels
        must be edit scripts of printable strings (a lemma may hold spaces); others printable, without spaces
        (CoNLL-U allows none in those columns), and entity tags without ``|`` (they go in MISC, ``NER=``)."""
        for label in self.vocab.labels:
            if self.is_lemma:
                check_script(label, source)
                writable = all(part.isprintable() for part in json.loads(label) if isinstance(part, str))
            else:
                writable = (
                    label.isprintable()
                    and " " not in label
                    and label != ""
                    and not (self.column == NER and "|" in label)
                )
            if not writable:
                raise UserError(
                    f"{source}: the {self.column} label {label!r} cannot be written in a CoNLL-U column "
                    "(empty, or with whitespace, an unprintable character or, in an entity tag, '|')"
                )

    def decode(self, ids: Sequence[int], words: Sequence[str]) -> list[str]:
        """The column's values for ``words`` from the predicted ids."""
        if self.is_lemma:
            return [apply_script(self.vocab.decode(i), w) for i, w in zip(ids, words, strict=True)]
        return [self.vocab.decode(i) for i in ids]


def universal_features(feats: str) -> str:
    """A FEATS value reduced to the universal features, as the UD scorer compares it (``_`` becomes empty)."""
    return "|".join(sorted(f for f in feats.split("|") if f.split("=", 1)[0] in UNIVERSAL_FEATURES))


def label_columns(label_column: str | Sequence[str], source: str = "--data.label_column") -> list[str]:
    """The predicted columns, in order, from ``--data.label_column`` (one name or a list), or from the model
    directory file ``source``."""
    columns = [label_column] if isinstance(label_column, str) else list(label_column)
    if not columns:
        raise UserError(f"{source} names no column")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise UserError(f"{source} names {', '.join(repeated)} more than once")
    for column in columns:
        if column in NOT_PREDICTED:
            raise UserError(
                f"{source} names {column!r}, a column no head predicts: tag would write its predictions over "
                f"{NOT_PREDICTED[column]}"
            )
    return columns


def labels_by_column(labels: Sequence[str] | dict[str, Sequence[str]], columns: list[str]) -> dict[str, list[str]]:
    """Label lists by column, from a checkpoint's or an option's labels: a list (one column) or a mapping."""
    if not isinstance(labels, dict):
        if len(columns) != 1:
            raise UserError(f"one list of labels given for {len(columns)} columns ({', '.join(columns)})")
        return {columns[0]: list(labels)}
    if list(labels) != columns:
        raise UserError(f"labels are given for the columns {', '.join(labels)}, not for {', '.join(columns)}")
    return {column: list(values) for column, values in labels.items()}


def saved_labels(data_state: dict) -> dict[str, list[str]]:
    """The labels by column of a checkpoint's data state (one column's are a list beside its name)."""
    return labels_by_column(data_state["labels"], label_columns(data_state["label_column"]))


def metric_name(columns: Sequence[str], column: str, prefix: str = "val") -> str:
    """The logged name of a column's accuracy: ``val_acc`` for the first column (as single-column models
    have it), ``val_<column>`` for the others, ``val_alltags`` for AllTags."""
    return f"{prefix}_acc" if column == columns[0] else f"{prefix}_{column}"


def tag_columns(columns: Sequence[str]) -> list[str]:
    """The columns AllTags covers in a model predicting ``columns``: those of UPOS, XPOS and FEATS it
    predicts, when it predicts at least two of them (with one, AllTags is that column's accuracy)."""
    tagged = [c for c in columns if c in TAG_COLUMNS]
    return tagged if len(tagged) >= 2 else []
