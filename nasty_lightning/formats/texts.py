"""Labelled texts for sentence classification: one text a row, in ``.tsv``, ``.csv`` or ``.jsonl`` files.

TSV and CSV files start with a header row naming their columns, and are read with Python's ``csv`` module
(RFC 4180 quoting: a cell with the separator, a ``"`` or a line end inside is quoted whole, with ``""`` for
each ``"``; TSV quotes the same way). A JSONL file has one JSON object a line, such as
``{"text": "A fine film.", "label": "pos"}``. Several labels of one text (multi-label) are written ``a|b``
in a cell (``|`` separates labels in TSV and CSV, and in a JSON string), or as a JSON list ``["a", "b"]``;
an integer label (``1``) is read as its digits. An empty cell, ``_``, ``null`` or ``[]`` is no label.

Each row becomes a ``Sentence`` whose words are ``split_words`` of its text (a CoNLL-U token list: IDs
1..n, the word as FORM, ``_`` elsewhere), and whose ``tokens.metadata`` holds ``text`` and each label
column (``Sentence.sentence_label``); its ``line`` is the row's first line (a TSV or CSV header is line 1).
Blank lines are skipped. Errors are ``DataError``s, ``FILE:LINE: message``, with the start of their message:

- bytes that are not UTF-8: ``invalid UTF-8 at byte N of the line``
- no row at all: ``the file is empty``; a header and no row: ``the file holds no row after its header``;
  JSONL: ``the file holds no JSON object``
- a header without the text or a label column: ``no column 'text' in the header (its columns: ...)``,
  naming ``--data.text_column`` or ``--data.label_column``; the column twice: ``the column 'text' appears
  twice in the header``
- a row with another number of cells than the header: ``expected 2 cells as in the header, found 3``
- quoting: ``a quoted cell is never closed``, ``text after the closing " of a quoted cell``,
  ``a carriage return inside an unquoted cell``
- JSONL: ``invalid JSON (...)``, ``expected a JSON object``, ``no key 'text' in this object (its keys:
  ...)``, ``the value of 'text' is not a string``, ``the value of 'label' is not a label``
- ``empty text in 'text'`` (or only whitespace); a text in which ``split_words`` finds no word: ``no word in 'text'``
- a label left out where labels are required: ``no label in 'label'``
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from conllu.models import Metadata, TokenList

from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.conllu import CONLLU_FIELDS, Sentence, decode_lines, make_token, read_sentences

# Words as UD English splits them: numbers whole (3.14, 2,000), clitics apart (ca n't, it 's),
# every punctuation or symbol character on its own, and runs of letters and digits.
_WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+|[^\w\s]", re.IGNORECASE)

TEXT_SUFFIXES = (".tsv", ".csv", ".jsonl")
_SEPARATORS = {".tsv": "\t", ".csv": ","}
_BOM = "\ufeff"
LABEL_SEPARATOR = "|"  # between the labels of a multi-label cell: a|b

Row = tuple[int, int, list[str]]  # a CSV row: its first and last line, and its cells


def split_words(text: str) -> list[str]:
    """Split running text into words: punctuation, symbols and English clitics become words of their own."""
    return _WORD.findall(text)


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """The words of ``split_words`` with their start and end offsets in ``text``."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def is_text_file(path: str | Path) -> bool:
    """Whether ``path`` names a file of labelled texts (``TEXT_SUFFIXES``: .tsv, .csv, .jsonl)."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def read_texts(
    path: str | Path,
    text_column: str = "text",
    label_columns: tuple[str, ...] = ("label",),
    label_required: bool = True,
) -> list[Sentence]:
    """Every row of a .tsv, .csv or .jsonl file as a ``Sentence``; ``DataError`` at the first bad line. Without
    ``label_required`` (a file to tag), a label column or value may be missing, and is ``None``."""
    path, label_columns = str(path), tuple(label_columns)
    _check_columns(text_column, label_columns)
    suffix = _suffix(path)
    data = _read_bytes(path)
    if suffix == ".jsonl":
        rows = _json_rows(path, data, text_column, label_columns, label_required)
    else:
        rows = _table_rows(path, data, _SEPARATORS[suffix], text_column, label_columns, label_required)
    sentences = []
    for number, text, labels in rows:
        words = split_words(text)
        if not words:
            what = "empty text" if not text.strip() else "no word"
            raise DataError(path, number, f"{what} in {text_column!r} (give the row a text, or remove it)")
        tokens = [make_token(CONLLU_FIELDS, [str(i), w] + ["_"] * 8, i) for i, w in enumerate(words, start=1)]
        metadata = Metadata({"text": text, **labels})
        sentences.append(
            Sentence(TokenList(tokens, metadata, default_fields=CONLLU_FIELDS), number, [number] * len(words))
        )
    return sentences


def read_labelled(path: str | Path, columns: tuple[str, ...], text_column: str = "text") -> list[Sentence]:
    """A file to score or tag: labelled texts (``is_text_file``; a label may be missing) or CoNLL-U (or IOB2)."""
    if is_text_file(path):
        return read_texts(path, text_column, columns, label_required=False)
    return read_sentences(path)


def write_texts(path: str | Path, sentences: list[Sentence], predicted: dict[str, list[str | None]]) -> str:
    """The text of the file at ``path``, which ``read_texts`` read into ``sentences``, with the labels of
    ``predicted`` (a label column: one value per sentence, ``a|b`` for several, ``None`` for none) in each
    sentence's row.

    A row whose labels are already the predicted ones comes back byte for byte, and so does every blank line,
    the BOM and the line ends. Another row is written anew: in TSV and CSV by the ``csv`` module (the default
    dialect; quoting may change, values do not), a label column the header lacks added at its end (and empty
    in rows without a sentence); in JSONL by ``json.dumps(object, ensure_ascii=False)``, the label keys set,
    as a list of strings where the file holds a list in that key or a value holds several labels (``None``
    then ``[]``), else as a string (``None``: ``null``).
    """
    path = str(path)
    suffix = _suffix(path)
    data = _read_bytes(path)
    lines = _lines_with_ends(path, data)
    if any(len(values) != len(sentences) for values in predicted.values()):
        raise ValueError(f"expected a label per sentence ({len(sentences)}) in each predicted column")
    by_line = {s.line: {column: values[i] for column, values in predicted.items()} for i, s in enumerate(sentences)}
    if len(by_line) != len(sentences):
        raise ValueError("two sentences start at the same line")
    if suffix == ".jsonl":
        out = _write_json(lines, by_line, list(predicted))
    else:
        out = _write_table(path, lines, by_line, list(predicted), _SEPARATORS[suffix])
    if by_line:  # what is left: sentences that start at no row of the file
        raise ValueError(f"sentences at lines that start no row of {path}: {sorted(by_line)}")
    return (_BOM if data.startswith(_BOM.encode()) else "") + "".join(out)


def _check_columns(text_column: str, label_columns: tuple[str, ...]) -> None:
    clash = {text_column, "text"} & set(label_columns)
    if clash:
        raise UserError(f"the label column {clash.pop()!r} is the text's name: give a label column of its own")


def _suffix(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise UserError(f"{path} is not a file of labelled texts (a .tsv, .csv or .jsonl file)")
    return suffix


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err.__class__.__name__})") from None


def _lines_with_ends(path: str, data: bytes) -> list[str]:
    """The lines of ``decode_lines`` (which reports bytes that are not UTF-8), each with its line end."""
    chunks = data.removeprefix(_BOM.encode()).split(b"\n")
    lines = []
    for (number, line), chunk in zip(decode_lines(data, path), chunks, strict=True):
        lines.append(line + ("\r" if chunk.endswith(b"\r") else "") + ("\n" if number < len(chunks) else ""))
    return lines[:-1] if lines[-1] == "" else lines


def _label(cell: str) -> str | None:
    """A cell's labels, without whitespace around them and ``|`` joining them; ``None`` for none (or ``_``)."""
    value = LABEL_SEPARATOR.join(p.strip() for p in cell.split(LABEL_SEPARATOR) if p.strip())
    return None if value in ("", "_") else value


def _missing_label(path: str, number: int, column: str) -> DataError:
    return DataError(path, number, f"no label in {column!r} (every row of a file to learn from needs one)")


# TSV and CSV


def _table(path: str, lines: list[str], separator: str) -> Iterator[Row]:
    """The rows of a TSV or CSV text, blank lines left out; quoting problems raise ``DataError``."""
    reader = csv.reader(iter(lines), delimiter=separator, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _quoting_error(path, start, reader.line_num, str(err)) from None
        end = reader.line_num
        if cells:
            yield start, end, cells


def _quoting_error(path: str, start: int, number: int, error: str) -> DataError:
    if error.startswith("unexpected end of data"):
        return DataError(path, start, "a quoted cell is never closed (it runs from this row to the end of the file)")
    if "expected after" in error:
        why = 'text after the closing " of a quoted cell (quote the whole cell, with "" for each " inside it)'
        return DataError(path, number, why)
    if error.startswith("new-line character"):
        return DataError(path, number, "a carriage return inside an unquoted cell (quote the cell)")
    return DataError(path, number, f"unreadable row ({error})")


def _table_rows(
    path: str, data: bytes, separator: str, text_column: str, label_columns: tuple[str, ...], required: bool
) -> Iterator[tuple[int, str, dict[str, str | None]]]:
    rows = _table(path, _lines_with_ends(path, data), separator)
    header = next(rows, None)
    if header is None:
        example = separator.join(("text", *label_columns))
        raise DataError(path, 1, f"the file is empty (it starts with a header naming its columns: {example!r})")
    number, _, names = header
    at = _header_columns(path, number, [n.strip() for n in names], text_column, label_columns, required)
    sep = "tab" if separator == "\t" else "comma"
    found = False
    for number, _, cells in rows:
        found = True
        if len(cells) != len(names):
            why = f"expected {len(names)} cells as in the header, found {len(cells)}"
            raise DataError(path, number, f'{why} (a cell with a {sep} inside is quoted whole: "...")')
        labels = {c: None if at[c] is None else _label(cells[at[c]]) for c in label_columns}
        if required and (missing := next((c for c, v in labels.items() if v is None), None)):
            raise _missing_label(path, number, missing)
        yield number, cells[at[text_column]], labels
    if not found:
        raise DataError(path, number, "the file holds no row after its header")


def _header_columns(
    path: str, number: int, names: list[str], text_column: str, label_columns: tuple[str, ...], required: bool
) -> dict[str, int | None]:
    """Where the text and label columns are in the header (``None``: a label column it lacks, when allowed)."""
    at = {}
    for column, option in [(text_column, "text_column"), *((c, "label_column") for c in label_columns)]:
        if names.count(column) > 1:
            raise DataError(path, number, f"the column {column!r} appears twice in the header (rename one)")
        if column in names:
            at[column] = names.index(column)
        elif option == "label_column" and not required:
            at[column] = None
        else:
            what = "text" if option == "text_column" else "label"
            raise DataError(
                path,
                number,
                f"no column {column!r} in the header (its columns: {', '.join(names)}); "
                f"name the {what} column with --data.{option}",
            )
    return at


def _write_table(
    path: str, lines: list[str], by_line: dict[int, dict[str, str | None]], columns: list[str], separator: str
) -> list[str]:
    out = []
    rows = _table(path, lines, separator)
    written = 0  # lines before the next row: blank lines, kept
    header_line, _, header = next(rows)
    names = [n.strip() for n in header]
    added = [c for c in columns if c not in names]
    width = len(header) + len(added)
    at = {c: names.index(c) if c in names else len(header) + added.index(c) for c in columns}
    for start, end, cells in [(header_line, header_line, header), *rows]:
        out += lines[written : start - 1]
        written = end
        if start == header_line:
            new = cells + added
        else:
            new = cells + [""] * (width - len(cells))
            labels = by_line.pop(start, {})
            for column, value in labels.items():
                if _label(new[at[column]]) != value:
                    new[at[column]] = value or ""
        if new == cells:
            out += lines[start - 1 : end]
        else:
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=separator).writerow(new)  # ends with \r\n: this row's own end instead
            out.append(buffer.getvalue().removesuffix("\r\n") + _line_end(lines[end - 1]))
    return out + lines[written:]


def _line_end(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


# JSONL


def _json_type(value: object) -> str:
    """How ``value`` shows in a message: its JSON, cut short."""
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _json_rows(
    path: str, data: bytes, text_column: str, label_columns: tuple[str, ...], required: bool
) -> Iterator[tuple[int, str, dict[str, str | None]]]:
    found = False
    for number, line in decode_lines(data, path):
        if not line.strip():
            continue
        found = True
        obj = _json_object(path, number, line)
        if text_column not in obj:
            keys = ", ".join(map(repr, obj)) or "none"
            why = f"no key {text_column!r} in this object (its keys: {keys})"
            raise DataError(path, number, f"{why}; name the text's key with --data.text_column")
        text = obj[text_column]
        if not isinstance(text, str):
            raise DataError(path, number, f"the value of {text_column!r} is not a string ({_json_type(text)})")
        labels = {c: _json_label(path, number, c, obj.get(c)) for c in label_columns}
        for column, value in labels.items():
            if required and value is None and column not in obj:
                keys = ", ".join(map(repr, obj))
                why = f"no key {column!r} in this object (its keys: {keys})"
                raise DataError(path, number, f"{why}; name the label's key with --data.label_column")
            if required and value is None:
                raise _missing_label(path, number, column)
        yield number, text, labels
    if not found:
        example = '{"text": "...", "label": "..."}'
        raise DataError(path, 1, f"the file holds no JSON object (it has one a line: {example})")


def _json_object(path: str, number: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(path, number, f"invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise DataError(path, number, "invalid JSON (nested too deep)") from None
    if not isinstance(obj, dict):
        raise DataError(path, number, f"expected a JSON object ({{...}}) on the line, found {_json_type(obj)}")
    return obj


def _json_label(path: str, number: int, column: str, value: object) -> str | None:
    """A JSON label: a string, an integer, a list of them, or ``null``."""
    items = value if isinstance(value, list) else [value]
    if value is None:
        return None
    if not all(isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in items):
        why = f"the value of {column!r} is not a label ({_json_type(value)})"
        raise DataError(path, number, f"{why}: give a string, an integer or a list of them")
    return _label(LABEL_SEPARATOR.join(map(str, items)))


def _json_value(value: object) -> str | None | bool:
    """The label ``read_texts`` reads from a JSON value; ``False`` where it reads none."""
    try:
        return _json_label("", 0, "", value)
    except DataError:
        return False


def _write_json(lines: list[str], by_line: dict[int, dict[str, str | None]], columns: list[str]) -> list[str]:
    objects = {n: json.loads(lines[n - 1]) for n in by_line if 0 < n <= len(lines) and lines[n - 1].strip()}
    as_list = {
        c: any(isinstance(o.get(c), list) for o in objects.values())
        or any(LABEL_SEPARATOR in (labels.get(c) or "") for labels in by_line.values())
        for c in columns
    }
    out = list(lines)
    for number, obj in objects.items():
        labels = by_line.pop(number)
        changed = False
        for column, value in labels.items():
            if _json_value(obj.get(column)) == value:
                continue
            changed = True
            if as_list[column]:
                obj[column] = value.split(LABEL_SEPARATOR) if value else []
            else:
                obj[column] = value
        if changed:
            out[number - 1] = json.dumps(obj, ensure_ascii=False) + _line_end(lines[number - 1])
    return out
