"""Reading CoNLL-U treebanks and IOB2 NER files into sentences of syntactic words.

A line-level pass checks what the ``conllu`` package does not (column count, IDs, line numbers for
every error) and splits columns on tabs only (``conllu.parse_line`` also splits on double spaces,
which would break forms that contain them); ``conllu`` parses IDs and comments and holds the
result as a ``TokenList``.
Multiword-token ranges (``1-2``) and empty nodes (``8.1``) stay in the token list, so writers can
reproduce them, but only syntactic words (integer IDs) carry labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conllu.models import Metadata, Token, TokenList
from conllu.parser import parse_comment_line, parse_id_value

from nasty_lightning.errors import DataError

CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
IOB2_FIELDS = ("id", "form", "ner", "annotator1", "annotator2")
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.([1-9][0-9]*)")


def fields_for(path: str | Path) -> tuple[str, ...]:
    """Column names of a file: IOB2 (``.iob2``/``.bio``) or CoNLL-U (anything else)."""
    return IOB2_FIELDS if Path(path).suffix.lower() in {".iob2", ".bio"} else CONLLU_FIELDS


@dataclass
class Sentence:
    """One sentence: its parsed lines, and where it starts in the file."""

    tokens: TokenList
    line: int
    word_lines: list[int] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return [t["form"] for t in self.tokens if isinstance(t["id"], int)]

    def labels(self, column: str) -> list[str | None]:
        """The value of ``column`` for each syntactic word; ``None`` where it is ``_``."""
        values = [t[column] for t in self.tokens if isinstance(t["id"], int)]
        return [None if v == "_" else v for v in values]


def read_sentences(path: str | Path, fields: tuple[str, ...] | None = None) -> list[Sentence]:
    """Read every sentence of a CoNLL-U or IOB2 file, raising ``DataError`` at the first bad line."""
    fields = fields or fields_for(path)
    sentences = []
    for first_line, block in _blocks(str(path), len(fields)):
        metadata, tokens, word_lines = Metadata(), [], []
        for number, line in block:
            if line.startswith("#"):
                metadata.update(parse_comment_line(line))
                continue
            token = Token(zip(fields, line.split("\t"), strict=True))
            token["id"] = parse_id_value(token["id"])
            tokens.append(token)
            if isinstance(token["id"], int):
                word_lines.append(number)
        sentences.append(Sentence(TokenList(tokens, metadata, default_fields=fields), first_line, word_lines))
    if not sentences:
        raise DataError(str(path), 1, "the file holds no sentence")
    return sentences


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Decoded lines without line ends; a BOM and CRLF line ends are accepted."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(path, 0, f"cannot read the file ({err.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(path, number, f"invalid UTF-8 at byte {err.start + 1} of the line") from None
        yield number, line.removesuffix("\r")


def _blocks(path: str, n_fields: int) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """Sentence blocks as (first line number, [(line number, line)]), each checked line by line."""
    block: list[tuple[int, str]] = []
    expected = 1
    for number, line in read_lines(path):
        if not line.strip():
            if block:
                _check_has_words(path, block)
                yield block[0][0], block
            block, expected = [], 1
            continue
        if line.startswith("#"):
            if any(not prev.startswith("#") for _, prev in block):
                raise DataError(path, number, "comment line inside a sentence (comments must come before the tokens)")
            block.append((number, line))
            continue
        columns = line.split("\t")
        if len(columns) != n_fields:
            raise DataError(path, number, f"expected {n_fields} tab-separated columns, found {len(columns)}")
        token_id = columns[0]
        if _WORD_ID.fullmatch(token_id):
            if int(token_id) != expected:
                raise DataError(path, number, f"word ID {token_id} out of sequence (expected {expected})")
            expected += 1
        elif match := _RANGE_ID.fullmatch(token_id):
            start, end = int(match[1]), int(match[2])
            if start != expected or end <= start:
                raise DataError(path, number, f"multiword token range {token_id} does not start at word {expected}")
        elif match := _EMPTY_ID.fullmatch(token_id):
            if int(match[1]) != expected - 1:
                raise DataError(path, number, f"empty node {token_id} is misplaced (expected {expected - 1}.N)")
        else:
            raise DataError(path, number, f"invalid ID {token_id!r}")
        if not columns[1]:
            raise DataError(path, number, "empty FORM column")
        block.append((number, line))
    if block:
        _check_has_words(path, block)
        yield block[0][0], block


def _check_has_words(path: str, block: list[tuple[int, str]]) -> None:
    if all(line.startswith("#") for _, line in block):
        raise DataError(path, block[0][0], "comment lines with no sentence after them")
