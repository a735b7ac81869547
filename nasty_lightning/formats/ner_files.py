"""NER files besides IOB2: CoNLL-2003 columns, and IOB1 or BIOES tags, read as IOB2.

CoNLL-2003 files (``eng.train``, ``train.txt``) hold one word per line as four space-separated columns,
``token POS chunk NER``, sentences separated by blank lines and documents by ``-DOCSTART- -X- -X- O``
lines. A file is read as CoNLL-2003 when its suffix is ``.conll03`` or ``.conll2003`` or its first line
is a ``-DOCSTART-`` line. Every line is checked, and the first problem raises ``DataError``
(``FILE:LINE: what is wrong``), as for CoNLL-U.

Every tag is ``O``, or a prefix (``B-``, ``I-``, or one of BIOES below) and an entity type; anything else
(``B-``, ``X-PER``, an empty ``NER=``) is a ``DataError`` at its line (``check_tag``). Tags are used as IOB2
(every entity starts with ``B-``). Two other schemes are converted on read, with one warning per file that
says so:

- BIOES (also called IOBES; BILOU's ``L-``/``U-`` too): ``S-X`` becomes ``B-X``, ``E-X`` (``L-X``)
  becomes ``I-X``, ``U-X`` becomes ``B-X``;
- IOB1 (the original CoNLL-2003 files): an entity starts with ``I-X``, and ``B-X`` only separates two
  adjacent entities of one type. A file is IOB1 when some entity starts with ``I-X`` and no ``B-X``
  starts one after ``O``, another type or the start of a sentence: each ``I-X`` that starts an entity
  becomes ``B-X``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from conllu.models import Token, TokenList

from nasty_lightning.errors import DataError

CONLL2003_FIELDS = ("id", "form", "pos", "chunk", "ner")
# A tag: O, or a prefix of IOB2, IOB1 or BIOES (BILOU) and an entity type; ``_`` is no tag (a word to skip).
TAG = re.compile(r"O|[BIESLU]-\S+|_")
CONLL2003_SUFFIXES = {".conll03", ".conll2003"}
DOCSTART = "-DOCSTART-"


def is_conll2003(path: str | Path, first_line: str | None) -> bool:
    """Whether a file is CoNLL-2003: by its suffix, or a first line that starts a document."""
    return Path(path).suffix.lower() in CONLL2003_SUFFIXES or (first_line or "").split(" ")[0] == DOCSTART


def conll2003_rows(path: str, lines: list[tuple[int, str]]) -> list[list[tuple[int, list[str]]]]:
    """Sentences of (line number, [token, POS, chunk, NER]) rows, every line checked."""
    sentences: list[list[tuple[int, list[str]]]] = [[]]
    for number, line in lines:
        if not line.strip():
            if sentences[-1]:
                sentences.append([])
            continue
        columns = line.split(" ")
        if len(columns) != 4 or not all(columns):
            raise DataError(path, number, f"expected 4 columns (token POS chunk NER) separated by one space: {line!r}")
        if columns[0] == DOCSTART:
            if sentences[-1]:
                raise DataError(path, number, "a -DOCSTART- line inside a sentence (a blank line must come before it)")
            continue
        sentences[-1].append((number, columns))
    sentences = [s for s in sentences if s]
    if not sentences:
        raise DataError(path, 1, "the file holds no sentence")
    return sentences


def conll2003_tokens(rows: list[tuple[int, list[str]]]) -> TokenList:
    """One sentence as a token list with the fields of ``CONLL2003_FIELDS`` (IDs counted from 1)."""
    return TokenList(
        [Token(zip(CONLL2003_FIELDS, [i, *columns], strict=True)) for i, (_, columns) in enumerate(rows, start=1)],
        default_fields=CONLL2003_FIELDS,
    )


def check_tag(path: str, line: int, tag: str) -> None:
    """Raise ``DataError`` at a tag that is not ``O``, ``_`` or a prefix and an entity type (``B-PER``)."""
    if not TAG.fullmatch(tag):
        raise DataError(
            path,
            line,
            f"malformed NER tag {tag!r}: expected O, or B-TYPE or I-TYPE (IOB2; BIOES's S-, E- are read too)",
        )


def to_bio(tags: list[str]) -> list[str]:
    """BIOES/BILOU tags as IOB2 (``S-``/``U-`` begin an entity, ``E-``/``L-`` continue it)."""
    mapping = {"S": "B", "U": "B", "E": "I", "L": "I"}
    return [f"{mapping.get(t[0], t[0])}{t[1:]}" if len(t) > 2 and t[1] == "-" else t for t in tags]


def starts_entity(tags: list[str], i: int) -> bool:
    """Whether the tag at ``i`` (``B-X`` or ``I-X``) follows no tag of its own entity type."""
    return i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tags[i][2:]


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 tags as IOB2: an ``I-X`` that starts an entity becomes ``B-X``."""
    return [f"B-{t[2:]}" if t.startswith("I-") and starts_entity(tags, i) else t for i, t in enumerate(tags)]


def scheme(sentences: list[list[str]]) -> str:
    """The tag scheme of a file's sentences of tags: ``BIOES``, ``IOB1`` or ``IOB2``."""
    if any(len(t) > 2 and t[1] == "-" and t[0] in "SEUL" for tags in sentences for t in tags):
        return "BIOES"
    i_starts = b_starts = False
    for tags in sentences:
        for i, t in enumerate(tags):
            if t[:2] in ("B-", "I-") and starts_entity(tags, i):
                i_starts |= t[0] == "I"
                b_starts |= t[0] == "B"
    return "IOB1" if i_starts and not b_starts else "IOB2"


def as_iob2(path: str, sentences: list[list[str]]) -> list[list[str]] | None:
    """The sentences' tags converted to IOB2 (with a warning), or None when they are IOB2 already."""
    found = scheme(sentences)
    if found == "IOB2":
        return None
    warnings.warn(f"{path}: {found} tags, converted to IOB2 on read (every entity starts with B-)", stacklevel=3)
    convert = to_bio if found == "BIOES" else iob1_to_iob2
    return [convert(tags) for tags in sentences]
