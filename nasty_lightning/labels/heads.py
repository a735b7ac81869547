"""Heads: what a model predicts for one column, with the labels it knows.

A model has one head per predicted column, all on one shared encoder. A head knows its column, turns the
column's values into label ids for training (``encode``) and ids back into values for tagging (``decode``),
and names its validation metric. ``upos``, ``xpos``, ``deprel``, ``feats`` (the whole FEATS string is one
label, as UDPipe 2 does) and ``ner`` are classes; ``lemma`` is predicted as an edit script from the form
(``nasty_lightning.labels.lemmas``), applied to the word when tagging. Any other column is a sentence's:
one label for the whole sentence or text (a CoNLL-U comment ``# genre = ...``, or a column of a TSV, CSV or
JSON Lines file of labelled texts), predicted from the pooled encoder output. A sentence head may be
multi-label (``--data.multi_label``): a text has a set of labels, written ``a|b`` (``LABEL_SEPARATOR``), each
label a yes/no question of its own.

Label ids: ``LabelVocab`` owns them, and the one extra id, ``unseen``, that stands for a value training
never saw: never predicted, so always counted wrong, and left out of the loss. A multi-label head's id of a
set of labels is a bit mask, bit ``i`` for the label of id ``i`` (``Head.encode``, ``Head.label_set``): so every
head's targets fit one integer tensor, and a set is right when its mask is (exact match). Labels training
never saw are left out of the mask; at most ``MAX_MULTI_LABELS`` labels.

``LabelSchema`` is what a model predicts: its heads in order, the first being the encoder's own classifier. Its
serialisation is ``to_dict`` (``{column: labels}``); it alone reads the forms checkpoints and model directories
hold (``from_checkpoint``, ``from_model_dir``) and writes them back. This module imports no PyTorch: the data,
the Lightning module, warm start, export, quantize and the tagger all use it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.conllu import CONLLU_FIELDS, IOB2_FIELDS, check_labels, columns_of
from nasty_lightning.formats.model_dir import CONFIG_FILE, META_FILE
from nasty_lightning.formats.ner_files import CONLL2003_FIELDS
from nasty_lightning.formats.texts import LABEL_SEPARATOR, is_text_file
from nasty_lightning.labels.entities import is_iob2
from nasty_lightning.labels.lemmas import LEMMA, apply_script, check_script, edit_script

if TYPE_CHECKING:
    from nasty_lightning.formats.conllu import Sentence

UPOS = "upos"
IGNORE = -100  # a word without a label: no loss, no score
MAX_MULTI_LABELS = 62  # a multi-label head's label set is a bit mask in an int64, kept positive
TAG_COLUMNS = (UPOS, "xpos", "feats")  # AllTags, as the UD scorer defines it: these all right for a word
NER = "ner"
ALLTAGS = "alltags"
FEATS = "feats"
# Columns of words; every other column a head predicts is a sentence's (``Head.is_sentence``).
WORD_COLUMNS = frozenset(CONLLU_FIELDS + IOB2_FIELDS + CONLL2003_FIELDS)
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
    multi_label: bool = False  # a sentence head whose texts have a set of labels (``--data.multi_label``)

    @property
    def is_lemma(self) -> bool:
        return self.column == LEMMA

    @property
    def is_sentence(self) -> bool:
        """Whether the head gives the whole sentence (or text) one label, rather than one to every word: the
        columns that are not a word's (``WORD_COLUMNS``). A nameless column (an old single-column model) is a
        word's."""
        return is_sentence_column(self.column)

    @cached_property
    def is_entities(self) -> bool:
        """Whether the labels are IOB2 tags: decoded as valid tag sequences, and scored by entity F1 too."""
        return is_iob2(self.vocab.labels)

    @property
    def kind(self) -> str:
        """What the head predicts: ``lemma`` (edit scripts from the form), ``entities`` (IOB2 tags), ``tags`` or
        ``sentence`` (one label for the sentence)."""
        if self.is_sentence:
            return "sentence"
        return "lemma" if self.is_lemma else "entities" if self.is_entities else "tags"

    @property
    def needs_every_value(self) -> bool:
        """Whether a training file must give every word a value. Not lemmas: UD writes ``_`` for a word
        without one (the parts of a word split by a typo, ``goeswith``), which training leaves out."""
        return not self.is_lemma

    def parts(self, value: str | None) -> list[str]:
        """The labels in a multi-label head's value (``a|b``), or the value itself for any other head."""
        if value is None:
            return []
        return [v for v in value.split(LABEL_SEPARATOR) if v] if self.multi_label else [value]

    def encode(self, value: str | None) -> int:
        """The label id of a value (``IGNORE`` for none); for a multi-label head the bit mask of its labels, those
        training never saw left out (``IGNORE`` where none is left)."""
        if not self.multi_label:
            return self.vocab.encode(value)
        mask = sum(1 << i for i in {self.vocab.encode(v) for v in self.parts(value)} if i < self.vocab.unseen)
        return mask or IGNORE

    def label_set(self, mask: int) -> str:
        """A multi-label head's value of a bit mask: its labels in vocabulary order, joined by ``|`` ("" for none)."""
        return LABEL_SEPARATOR.join(label for i, label in enumerate(self.vocab.labels) if mask >> i & 1)

    def sentence_targets(self, path: str, sentences: Sequence[Sentence], complete: bool = True) -> list[str | None]:
        """A sentence head's label of each sentence (``None``: none), ``DataError`` at the first sentence without
        one where every sentence needs one (``complete``), or where none has one."""
        values = [s.sentence_label(self.column) for s in sentences]
        if sentences and all(v is None for v in values) and not is_text_file(path):  # a misspelt column, maybe
            raise DataError(
                path,
                1,
                f"no column {self.column!r} in this file (its columns: {', '.join(columns_of(sentences, path))}), "
                f"and no sentence has a '# {self.column} = ...' comment to label it",
            )
        missing = next((s for s, v in zip(sentences, values, strict=True) if v is None), None)
        if missing is not None and (complete or all(v is None for v in values)):
            raise DataError(
                path,
                missing.line,
                f"the sentence has no {self.column!r} label (a '# {self.column} = ...' comment in CoNLL-U, a "
                f"{self.column!r} column or key in TSV, CSV or JSON Lines); --data.label_column names it",
            )
        return values

    def check_values(self, path: str, sentences: list[Sentence]) -> None:
        """Raise ``DataError`` where a training file lacks the head's values: a sentence's label, or a word's where
        every word needs one (``needs_every_value``)."""
        if self.is_sentence:
            self.sentence_targets(path, sentences)
        else:
            check_labels(path, sentences, self.column, complete=self.needs_every_value)

    def targets(self, words: Sequence[str], values: Sequence[str | None]) -> list[str | None]:
        """What the head learns for each word, given the column's values (``None``: no value): the value
        itself, or for lemmas the edit script from the word to its lemma."""
        if self.is_lemma:
            return [None if v is None else edit_script(w, v) for w, v in zip(words, values, strict=True)]
        return list(values)

    def check(self, source: str) -> None:
        """Raise ``UserError`` at a label this head cannot use or ``tag`` could not write: a lemma head's labels
        must be edit scripts of printable strings (a lemma may hold spaces); a sentence's printable, not ``_``;
        others printable, without spaces (CoNLL-U allows none in those columns), and entity tags without ``|``
        (they go in MISC, ``NER=``)."""
        if self.multi_label and len(self.vocab) > MAX_MULTI_LABELS:
            raise UserError(
                f"{source}: the multi-label column {self.column} has {len(self.vocab)} labels; at most "
                f"{MAX_MULTI_LABELS} are supported"
            )
        for label in self.vocab.labels:
            if self.is_lemma:
                check_script(label, source)
                writable = all(part.isprintable() for part in json.loads(label) if isinstance(part, str))
            elif self.is_sentence:  # a comment's or a cell's value: inner spaces are fine
                writable = label.isprintable() and label == label.strip() and label not in ("", "_")
                writable = writable and not (self.multi_label and LABEL_SEPARATOR in label)
            else:
                writable = (
                    label.isprintable()
                    and " " not in label
                    and label != ""
                    and not (self.column == NER and "|" in label)
                )
            if not writable and self.is_sentence:
                raise UserError(
                    f"{source}: the {self.column} label {label!r} cannot be written as a sentence's label "
                    "(empty, '_', with an unprintable character, spaces around it or, multi-label, '|')"
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


def is_sentence_column(column: str) -> bool:
    """Whether a head of ``column`` labels whole sentences (``Head.is_sentence``)."""
    return column != "" and column not in WORD_COLUMNS


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


def metric_name(columns: Sequence[str], column: str, prefix: str = "val") -> str:
    """The logged name of a column's accuracy: ``val_acc`` for the first column (as single-column models
    have it), ``val_<column>`` for the others, ``val_alltags`` for AllTags."""
    return f"{prefix}_acc" if column == columns[0] else f"{prefix}_{column}"


def tag_columns(columns: Sequence[str]) -> list[str]:
    """The columns AllTags covers in a model predicting ``columns``: those of UPOS, XPOS and FEATS it
    predicts, when it predicts at least two of them (with one, AllTags is that column's accuracy)."""
    tagged = [c for c in columns if c in TAG_COLUMNS]
    return tagged if len(tagged) >= 2 else []


@dataclass(frozen=True)
class LabelSchema:
    """The heads of a model, in order: the first is the encoder's own classifier, the others read the same hidden
    states. A column may be nameless (``""``): a single-column model given its labels as a plain list."""

    heads: tuple[Head, ...]

    @property
    def multi_label(self) -> bool:
        """Whether its sentence heads are multi-label (``--data.multi_label``)."""
        return any(head.multi_label for head in self.heads)

    @property
    def columns(self) -> list[str]:
        return [head.column for head in self.heads]

    def __iter__(self) -> Iterator[Head]:
        return iter(self.heads)

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, index: int) -> Head:
        return self.heads[index]

    @property
    def lexicon_tag_column(self) -> str | None:
        """The column a lemma lexicon keys words by, with their form: UPOS where the model predicts it."""
        return UPOS if UPOS in self.columns else None

    @property
    def sentence_heads(self) -> list[int]:
        """The indices of the heads that label whole sentences (``Head.is_sentence``)."""
        return [h for h, head in enumerate(self.heads) if head.is_sentence]

    def label_ids(self, path: str, sentences: list[Sentence]) -> tuple[list[list[tuple[int, ...]]], dict[str, Counter]]:
        """Every word's label ids (one per head), by sentence, and the labels the vocabularies lack, by column; each
        column's values checked first (``FILE:LINE`` for a word without one, where every word needs one)."""
        unknown = {head.column: Counter() for head in self.heads}
        columns = []  # by head, sentence and word: label ids
        for head in self.heads:
            if head.is_sentence:  # the sentence's label on each of its words (``encoding.encode`` keeps one)
                values = head.sentence_targets(path, sentences)
                columns.append([[head.encode(v)] * len(s.words) for s, v in zip(sentences, values, strict=True)])
                unknown[head.column].update(p for v in values for p in head.parts(v) if p not in head.vocab)
                continue
            check_labels(path, sentences, head.column, complete=head.needs_every_value)
            ids = []
            for s in sentences:
                targets = head.targets(s.words, s.labels(head.column))
                ids.append([head.vocab.encode(t) for t in targets])
                unknown[head.column].update(t for t in targets if t is not None and t not in head.vocab)
            columns.append(ids)
        return [list(zip(*per_head, strict=True)) for per_head in zip(*columns, strict=True)], unknown

    def check_gold(self, path: str, sentences: list[Sentence]) -> None:
        """Raise ``DataError`` where a file to score lacks a column or a sentence label entirely, or holds a word
        without its value among words with one (``check_labels``)."""
        for head in self.heads:
            if head.is_sentence:
                head.sentence_targets(path, sentences, complete=False)
            else:
                check_labels(path, sentences, head.column, complete=False)

    def to_dict(self) -> dict[str, list[str]]:
        """The labels of every head by column, in order: the schema's serialisation (and the model's ``labels``)."""
        return {head.column: list(head.vocab.labels) for head in self.heads}

    @classmethod
    def from_dict(cls, labels: Mapping[str, Sequence[str]], multi_label: bool = False) -> LabelSchema:
        """The schema of ``to_dict``'s labels; with ``multi_label``, its sentence heads are multi-label."""
        return cls(
            tuple(
                Head(column, LabelVocab(tuple(values)), multi_label and is_sentence_column(column))
                for column, values in labels.items()
            )
        )

    @classmethod
    def of(
        cls,
        labels: Sequence[str] | Mapping[str, Sequence[str]],
        columns: Sequence[str] | None = None,
        multi_label: bool = False,
    ) -> LabelSchema:
        """The schema of labels in any form they are given or saved in: ``{column: labels}``, or one column's
        as a plain list, named ``columns[0]`` (nameless without ``columns``). With ``columns``, the labels must
        be theirs, in their order."""
        if isinstance(labels, Mapping):
            if columns is not None and list(labels) != list(columns):
                raise UserError(f"labels are given for the columns {', '.join(labels)}, not for {', '.join(columns)}")
            return cls.from_dict(labels, multi_label)
        if columns is not None and len(columns) != 1:
            raise UserError(f"one list of labels given for {len(columns)} columns ({', '.join(columns)})")
        return cls.from_dict({columns[0] if columns else "": labels}, multi_label)

    @classmethod
    def learn(cls, columns: Sequence[str], sentences: Sequence[Sentence], multi_label: bool = False) -> LabelSchema:
        """The labels training finds in ``sentences`` (what each head learns: ``Head.targets``; each label of a
        multi-label head's sets), sorted."""

        def values(column: str) -> Iterator[str | None]:
            head = Head(column, LabelVocab(()), multi_label and is_sentence_column(column))
            if head.is_sentence:
                return (p for s in sentences for p in head.parts(s.sentence_label(column)))
            return (v for s in sentences for v in head.targets(s.words, s.labels(column)))

        schema = cls.from_dict({column: LabelVocab.of(values(column)).labels for column in columns}, multi_label)
        for head in schema:
            if head.multi_label:  # at most MAX_MULTI_LABELS labels, none with a | in it
                head.check("the training data")
        return schema

    def checkpoint_labels(self) -> list[str] | dict[str, list[str]]:
        """The labels as a checkpoint's data state holds them: ``to_dict``, but one column's as a plain list
        beside its name, as single-column checkpoints have always had them."""
        return list(self.heads[0].vocab.labels) if len(self.heads) == 1 else self.to_dict()

    @classmethod
    def from_checkpoint(cls, data_state: Mapping[str, Any]) -> LabelSchema:
        """The schema of a checkpoint's data state (``labels`` beside ``label_column``), of any version."""
        columns = label_columns(data_state["label_column"])
        return cls.of(data_state["labels"], columns, bool(data_state.get("multi_label", False)))

    def meta_heads(self) -> dict[str, Any]:
        """The ``META_FILE`` entries of the heads after the first (none for one column), and ``multi_label``
        where it is: the first's labels are ``config.json``'s ``id2label``, its column ``META_FILE``'s
        ``label_column``."""
        rest = [{"column": head.column, "labels": list(head.vocab.labels)} for head in self.heads[1:]]
        return ({"heads": rest} if rest else {}) | ({"multi_label": True} if self.multi_label else {})

    @classmethod
    def from_model_dir(cls, config: Any, meta: Mapping[str, Any], folder: str | Path) -> LabelSchema:
        """The schema of a model directory: the classifier's labels from its ``config`` (``id2label``), its column
        and the other heads from ``meta`` (its checked ``META_FILE``); every label must be one ``tag`` can write."""
        heads = [(meta["label_column"], [config.id2label[i] for i in range(config.num_labels)])]
        heads += [(h["column"], h["labels"]) for h in meta.get("heads", [])]
        label_columns([c for c, _ in heads], str(Path(folder) / META_FILE))  # no column twice, none of NOT_PREDICTED
        schema = cls.from_dict(dict(heads), meta.get("multi_label") is True)
        for head in schema:
            head.check(str(Path(folder) / (CONFIG_FILE if head is schema[0] else META_FILE)))
        return schema
