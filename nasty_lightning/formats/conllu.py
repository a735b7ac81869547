"""Reading CoNLL-U treebanks and IOB2 NER files into sentences of syntactic words.

Every line is checked before it is used, with the level-1 rules of the UD validator as the
checklist, and the first problem raises ``DataError``, whose text is ``FILE:LINE: what is wrong``.
Errors, with the start of their message:

- bytes that are not UTF-8: ``invalid UTF-8 at byte N of the line``
- a token line without one column per field: ``expected 10 tab-separated columns, found 9``
- an empty column (CoNLL-U writes ``_`` for an empty value): ``empty value in the column 'lemma'``
- whitespace at either end of a column: ``leading whitespace in the column 'form'`` (or
  ``trailing``); it would change a word or a label. MISC is the exception: it is neither, the
  tagger keeps it byte for byte, so there it is only a warning
- whitespace inside a column other than FORM, LEMMA and MISC: ``whitespace inside the column 'upos'``
- an ID that is no word (``1``), multiword range (``1-2``) or empty node (``1.1``): ``invalid ID 'x'``
- a word ID seen before in the sentence: ``duplicate word ID 2``; any other gap or jump:
  ``word ID 4 out of sequence (expected 3)``
- a range that is not N-M with 1 <= N < M: ``invalid multiword token range 3-2``
- a range that starts inside the previous one: ``multiword token range 2-3 overlaps the range 1-2``
- a range that is not right before its first word: ``multiword token range 2-3 does not start at word 1``
- a range that ends after the last word (reported at the range): ``multiword token range 4-5 runs
  past the last word of the sentence (4)``
- a range with a value other than ``_`` outside ID, FORM and MISC: ``multiword token range 1-2 has
  a value in the column 'upos'``
- an empty node after the wrong word: ``empty node 3.1 is misplaced (expected 2.N)``; decimals not
  1, 2, 3... in order: ``empty node 2.2 is out of order (expected 2.1)``
- a comment after the first token of a sentence: ``comment line inside a sentence``
- comments that no token follows: ``comment lines with no sentence after them``
- token lines without a word: ``a sentence with no word`` (at its first token line)
- no sentence at all: ``the file holds no sentence``

Tolerated silently: a BOM, CRLF line ends, no blank line after the last sentence, several blank
lines in a row. Tolerated with a warning (``FILE:LINE: ...``, once per kind and file, with the
number of lines like it), as they do not change which word gets which label: a line of only
whitespace (read as a blank line), whitespace at either end of MISC, a line not in Unicode NFC,
and a ``# text`` comment that the forms and ``SpaceAfter=No`` do not spell out (files with a MISC
column only: IOB2 has no SpaceAfter).
Not checked, unlike UD: two spaces in a row (``10  000`` is a valid form here), whitespace in
the FORM or LEMMA of a range, and everything of level 2 and up (HEAD, DEPREL, FEATS...).

A label column is checked apart, by ``check_labels``, as a training file needs a label on every
word: ``no column 'upos' in this file (its columns: ...)`` and ``no word has a value in the column
'upos'`` (both at line 1), ``word 'x' has no value in the column 'upos'`` (at the first such word,
when others have one). ``_`` is a missing value in most columns (UPOS, DEPREL, LEMMA, NER...), but
in the columns of ``UNDERSCORE_IS_A_LABEL`` (FEATS, XPOS) it is a label of its own: "no features"
(most words of a UD treebank) and "no XPOS" (treebanks that have none), so those columns never
miss a value.

A CoNLL-U file may carry named entities in MISC, as ``NER=B-PER`` items (``MISC_NER``): they are read
as a ``ner`` column, which a model can learn alone or beside the other columns, and ``tag`` writes
its predictions back there.

Columns are split on tabs only (``conllu.parse_line`` also splits on double spaces, which would
break such forms); IDs are parsed here, into what ``conllu`` makes of them, by the expressions that
check them; ``conllu`` parses comments and holds the result as a ``TokenList``.
Multiword-token ranges (``1-2``) and empty nodes (``8.1``) stay in the token list, so writers can
reproduce them, but only syntactic words (integer IDs) carry labels.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from conllu.models import Metadata, Token, TokenList
from conllu.parser import parse_comment_line

from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.ner_files import (
    CONLL2003_FIELDS,
    as_iob2,
    check_tag,
    conll2003_rows,
    conll2003_tokens,
    is_conll2003,
)

CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
IOB2_FIELDS = ("id", "form", "ner", "annotator1", "annotator2")
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.([1-9][0-9]*)")
_SPACES_ALLOWED = {"form", "lemma", "misc"}  # columns whose values may hold whitespace inside
_RANGE_VALUES = {"id", "form", "misc"}  # the only columns of a multiword range that are not _
# Columns where ``_`` is a value ("no features", "no XPOS"), not a missing label: a tagger learns it
# like any other label. Everywhere else ``_`` means the word has no label.
UNDERSCORE_IS_A_LABEL = frozenset({"feats", "xpos"})
MISC_NER = "NER"  # the MISC attribute of a CoNLL-U word's entity tag: NER=B-PER

TokenId = int | tuple[int, str, int]  # 3, (1, "-", 2) or (8, ".", 1), as ``conllu`` writes them
Row = tuple[int, list[str], TokenId]  # a token line: its number, columns and parsed ID


def fields_for(path: str | Path) -> tuple[str, ...]:
    """Column names of a file: IOB2 (``.iob2``/``.bio``), CoNLL-2003 (``nasty_lightning.formats.ner_files``), or
    CoNLL-U (anything else)."""
    if Path(path).suffix.lower() in {".iob2", ".bio"}:
        return IOB2_FIELDS
    return CONLL2003_FIELDS if is_conll2003(path, _first_line(path)) else CONLLU_FIELDS


def _first_line(path: str | Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.readline(200).decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
    except OSError:
        return None


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
        """The value of ``column`` for each syntactic word; ``None`` where it is ``_``, except in the
        columns of ``UNDERSCORE_IS_A_LABEL`` (FEATS, XPOS), where ``_`` is a label."""
        values = [t[column] for t in self.tokens if isinstance(t["id"], int)]
        if column in UNDERSCORE_IS_A_LABEL:
            return values
        return [None if v == "_" else v for v in values]

    def sentence_label(self, column: str) -> str | None:
        """The sentence's label in ``column``: a CoNLL-U comment ``# column = value``, or a label column of
        ``formats.texts``; ``None`` where it has none (or ``_``)."""
        value = self.tokens.metadata.get(column)
        return None if value in (None, "_") else value


def read_sentences(path: str | Path, fields: tuple[str, ...] | None = None) -> list[Sentence]:
    """Read every sentence of a CoNLL-U, IOB2 or CoNLL-2003 file, raising ``DataError`` at the first bad line;
    NER tags in IOB1 or BIOES are converted to IOB2 (``nasty_lightning.formats.ner_files``)."""
    path, fields = str(path), fields or fields_for(path)
    if fields == CONLL2003_FIELDS:
        blocks = conll2003_rows(path, list(read_lines(path)))
        sentences = [Sentence(conll2003_tokens(rows), rows[0][0], [n for n, _ in rows]) for rows in blocks]
    else:
        sentences = _read_conllu(path, fields)
    if "ner" in fields or ("misc" in fields and _ner_from_misc(sentences)):
        _ner_as_iob2(path, sentences)
    return sentences


def misc_value(misc: str, name: str) -> str | None:
    """The value of the attribute ``name`` in a MISC column (``NER`` in ``SpaceAfter=No|NER=B-PER``)."""
    for item in misc.strip().split("|"):
        key, equals, value = item.partition("=")
        if equals and key == name:
            return value
    return None


def with_misc_value(misc: str, name: str, value: str) -> str:
    """MISC with the attribute ``name`` set to ``value``: replaced where it is, else added at the end (the
    whitespace at its ends, which the reader tolerates, is dropped)."""
    items = [] if misc.strip() == "_" else misc.strip().split("|")
    at = next((i for i, item in enumerate(items) if item.partition("=")[0] == name), None)
    if at is None:
        items.append(f"{name}={value}")
    else:
        items[at] = f"{name}={value}"
    return "|".join(items)


def _ner_from_misc(sentences: list[Sentence]) -> bool:
    """Give the words of a CoNLL-U file a ``ner`` column from MISC's ``NER=`` items (``_`` where a word has
    none), if any word has one; whether one had."""
    values = [[misc_value(t["misc"], MISC_NER) for t in s.tokens if isinstance(t["id"], int)] for s in sentences]
    if all(v is None for sentence in values for v in sentence):
        return False
    for sentence, tags in zip(sentences, values, strict=True):
        for token, tag in zip((t for t in sentence.tokens if isinstance(t["id"], int)), tags, strict=True):
            token["ner"] = "_" if tag is None else tag
    return True


def columns_of(sentences: list[Sentence], path: str | Path) -> tuple[str, ...]:
    """The columns of a file's words: its fields, and ``ner`` for a CoNLL-U file with ``NER=`` in MISC."""
    fields = sentences[0].tokens.default_fields if sentences else fields_for(path)
    word = next((t for t in sentences[0].tokens if isinstance(t["id"], int)), {}) if sentences else {}
    return (*fields, "ner") if "ner" not in fields and "ner" in word else fields


def _ner_as_iob2(path: str, sentences: list[Sentence]) -> None:
    """Check every NER tag (``check_tag``), and rewrite those of IOB1 or BIOES files as IOB2, in place."""
    words = [[t for t in s.tokens if isinstance(t["id"], int)] for s in sentences]
    for sentence, tokens in zip(sentences, words, strict=True):
        for token, line in zip(tokens, sentence.word_lines, strict=True):
            check_tag(path, line, token["ner"])
    converted = as_iob2(path, [[t["ner"] for t in tokens] for tokens in words])
    for tokens, tags in zip(words, converted or [], strict=False):
        for token, tag in zip(tokens, tags, strict=True):
            token["ner"] = tag


def _read_conllu(path: str, fields: tuple[str, ...]) -> list[Sentence]:
    notes = _Notes(path)
    sentences = []
    for comments, rows in _blocks(path, fields, notes):
        metadata, text_line = Metadata(), 0
        for number, line in comments:
            parsed = dict(parse_comment_line(line))
            metadata.update(parsed)
            text_line = number if "text" in parsed else text_line
        tokens = [make_token(fields, columns, token_id) for _, columns, token_id in rows]
        if text_line and "misc" in fields and _spelled_text(tokens) != metadata["text"]:
            notes.add(text_line, "the '# text' comment is not what the forms and SpaceAfter=No spell out")
        word_lines = [number for number, _, token_id in rows if isinstance(token_id, int)]
        first_line = (comments or rows)[0][0]
        sentences.append(Sentence(TokenList(tokens, metadata, default_fields=fields), first_line, word_lines))
    if not sentences:
        raise DataError(path, 1, "the file holds no sentence")
    notes.warn()
    return sentences


def check_labels(path: str | Path, sentences: list[Sentence], column: str, complete: bool = True) -> None:
    """Raise ``DataError`` unless ``column`` is a column of the file with a value on every word (on some word,
    without ``complete``: a file to score)."""
    fields = columns_of(sentences, path)
    if column not in fields:
        where = " (named entities in CoNLL-U go in MISC, as NER=B-PER)" if column == "ner" else ""
        raise DataError(str(path), 1, f"no column {column!r} in this file (its columns: {', '.join(fields)}){where}")
    first_missing, labelled = None, False
    for sentence in sentences:
        for form, label, number in zip(sentence.words, sentence.labels(column), sentence.word_lines, strict=True):
            if label is not None:
                labelled = True
            elif first_missing is None:
                first_missing = number, form
    if not labelled:
        raise DataError(str(path), 1, f"no word has a value in the column {column!r}")
    if first_missing is not None and complete:
        number, form = first_missing
        raise DataError(str(path), number, f"word {form!r} has no value in the column {column!r}")


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Decoded lines without line ends; a BOM and CRLF line ends are accepted."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err.__class__.__name__})") from None
    return decode_lines(data, path)


def decode_lines(data: bytes, source: str) -> Iterator[tuple[int, str]]:
    """The numbered lines of ``data`` without line ends (a BOM and CRLF line ends are accepted); bytes that
    are not UTF-8 raise ``DataError`` at ``source``'s line (a file name, or ``<stdin>``)."""
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(source, number, f"invalid UTF-8 at byte {err.start + 1} of the line") from None
        yield number, line.removesuffix("\r")


def _blocks(path: str, fields: tuple[str, ...], notes: _Notes) -> Iterator[tuple[list[tuple[int, str]], list[Row]]]:
    """Sentence blocks as (comment lines, token lines), each line checked as it is read."""
    comments: list[tuple[int, str]] = []
    rows: list[Row] = []
    ids = _IdSequence(path, fields)
    for number, line in read_lines(path):
        if not line or line.isspace():
            if line:
                notes.add(number, "a line of only whitespace, read as a blank line")
            if comments or rows:
                yield _sentence_block(path, comments, rows, ids)
                comments, rows = [], []
            continue
        if not line.isascii() and not unicodedata.is_normalized("NFC", line):
            notes.add(number, "the line is not in Unicode NFC")
        if line.startswith("#"):
            if rows:
                raise DataError(path, number, "comment line inside a sentence (comments must come before the tokens)")
            comments.append((number, line))
            continue
        columns = _columns(path, number, line, fields, notes)
        rows.append((number, columns, ids.parse(number, columns)))
    if comments or rows:
        yield _sentence_block(path, comments, rows, ids)


def _sentence_block(
    path: str, comments: list[tuple[int, str]], rows: list[Row], ids: _IdSequence
) -> tuple[list[tuple[int, str]], list[Row]]:
    """A finished block, once the checks that need the whole sentence pass; ``ids`` starts afresh."""
    if not rows:
        raise DataError(path, comments[0][0], "comment lines with no sentence after them")
    ids.end_sentence(rows[0][0])
    return comments, rows


def _columns(path: str, number: int, line: str, fields: tuple[str, ...], notes: _Notes) -> list[str]:
    """The tab-separated columns of a token line, checked for count, emptiness and whitespace."""
    columns = line.split("\t")
    if len(columns) != len(fields):
        raise DataError(path, number, f"expected {len(fields)} tab-separated columns, found {len(columns)}")
    # A quick look at the whole line; only a line that has a space, an empty column or a
    # non-printable character other than tab is looked at column by column.
    if " " in line or "\t\t" in line or line[0] == "\t" or line[-1] == "\t" or not line.replace("\t", "").isprintable():
        for name, value in zip(fields, columns, strict=True):
            _check_value(path, number, name, value, notes)
    return columns


def _check_value(path: str, number: int, name: str, value: str, notes: _Notes) -> None:
    """Raise at a value that is empty, or has whitespace where UD allows none; warn at MISC's ends."""
    if not value:
        raise DataError(path, number, f"empty value in the column {name!r} (CoNLL-U writes _ for an empty value)")
    end = "leading" if value[0].isspace() else "trailing" if value[-1].isspace() else None
    if end and name == "misc":
        notes.add(number, "whitespace at an end of the column 'misc' (kept as it is)")
    elif end:
        raise DataError(path, number, f"{end} whitespace in the column {name!r}")
    if name not in _SPACES_ALLOWED and any(char.isspace() for char in value):
        raise DataError(path, number, f"whitespace inside the column {name!r}")


class _IdSequence:
    """The ID rules of a sentence, one token line at a time: words 1, 2, 3...; a multiword range
    N-M right before word N, not overlapping the previous range, with ``_`` outside ID, FORM and
    MISC; empty nodes N.1, N.2... right after word N (0.1... before word 1)."""

    def __init__(self, path: str, fields: tuple[str, ...]) -> None:
        self.path = path
        self.range_blanks = [(i, name) for i, name in enumerate(fields) if name not in _RANGE_VALUES]
        self._start()

    def _start(self) -> None:
        self.next_word, self.next_empty = 1, 1
        self.range_id, self.range_end, self.range_line = "", 0, 0  # the sentence's last range

    def _fail(self, number: int, message: str) -> NoReturn:
        raise DataError(self.path, number, message)

    def parse(self, number: int, columns: list[str]) -> TokenId:
        """The ID of a token line, once it is checked against the lines before it."""
        token_id = columns[0]
        if _WORD_ID.fullmatch(token_id):
            return self._word(number, int(token_id))
        if match := _RANGE_ID.fullmatch(token_id):
            return self._range(number, token_id, int(match[1]), int(match[2]), columns)
        if match := _EMPTY_ID.fullmatch(token_id):
            return self._empty(number, token_id, int(match[1]), int(match[2]))
        self._fail(number, f"invalid ID {token_id!r}")

    def end_sentence(self, first_line: int) -> None:
        """Check that the sentence has words and its last range ends within it; start the next one."""
        if self.next_word == 1:
            self._fail(first_line, "a sentence with no word (only empty nodes or ranges)")
        if self.range_end >= self.next_word:
            where = f"the last word of the sentence ({self.next_word - 1})"
            self._fail(self.range_line, f"multiword token range {self.range_id} runs past {where}")
        self._start()

    def _word(self, number: int, word: int) -> int:
        if word < self.next_word:
            self._fail(number, f"duplicate word ID {word}")
        if word > self.next_word:
            self._fail(number, f"word ID {word} out of sequence (expected {self.next_word})")
        self.next_word, self.next_empty = word + 1, 1
        return word

    def _range(self, number: int, token_id: str, start: int, end: int, columns: list[str]) -> TokenId:
        if not 1 <= start < end:
            self._fail(number, f"invalid multiword token range {token_id} (it must be N-M with 1 <= N < M)")
        if start <= self.range_end:
            before = f"the range {self.range_id} on line {self.range_line}"
            self._fail(number, f"multiword token range {token_id} overlaps {before}")
        if start != self.next_word:
            self._fail(number, f"multiword token range {token_id} does not start at word {self.next_word}")
        for i, name in self.range_blanks:
            if columns[i] != "_":
                why = "a range has _ in every column but ID, FORM and MISC"
                self._fail(number, f"multiword token range {token_id} has a value in the column {name!r} ({why})")
        self.range_id, self.range_end, self.range_line = token_id, end, number
        return start, "-", end

    def _empty(self, number: int, token_id: str, word: int, decimal: int) -> TokenId:
        if word != self.next_word - 1:
            self._fail(number, f"empty node {token_id} is misplaced (expected {self.next_word - 1}.N)")
        if decimal != self.next_empty:
            self._fail(number, f"empty node {token_id} is out of order (expected {word}.{self.next_empty})")
        self.next_empty += 1
        return word, ".", decimal


class _Notes:
    """Cosmetic problems of a file, warned about after reading it: once per kind, at its first line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[str, list[int]] = {}

    def add(self, number: int, problem: str) -> None:
        self.lines.setdefault(problem, []).append(number)

    def warn(self) -> None:
        for problem, lines in self.lines.items():
            others = len(lines) - 1
            more = f" (and {others} more line{'s' * (others > 1)} like it)" if others else ""
            warnings.warn(f"{self.path}:{lines[0]}: {problem}{more}", stacklevel=3)


def make_token(fields: tuple[str, ...], columns: list[str], token_id: TokenId) -> Token:
    """A token of ``columns`` named by ``fields``, with its parsed ``token_id``."""
    token = Token(zip(fields, columns, strict=True))
    token["id"] = token_id
    return token


def _spelled_text(tokens: list[Token]) -> str:
    """The text that surface tokens (ranges, and words outside them) spell out with their SpaceAfter."""
    parts, covered = [], 0
    for token in tokens:
        token_id = token["id"]
        if isinstance(token_id, tuple):
            if token_id[1] != "-":
                continue  # an empty node
            covered = token_id[2]
        elif token_id <= covered:
            continue  # a word of the last range
        no_space = "SpaceAfter=No" in token["misc"].strip().split("|")
        parts.append(token["form"] if no_space else token["form"] + " ")
    return "".join(parts).removesuffix(" ")
