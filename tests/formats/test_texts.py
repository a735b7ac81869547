"""Labelled texts (``formats.texts``): .tsv, .csv and .jsonl rows read into sentences, and written back with
predicted labels; every malformed row reported at its line."""

from __future__ import annotations

import csv
import io
import json

import pytest

import nasty_lightning.formats.texts as texts
from nasty_lightning.errors import DataError, UserError
from nasty_lightning.formats.conllu import CONLLU_FIELDS, read_sentences
from nasty_lightning.formats.texts import TEXT_SUFFIXES, is_text_file, read_texts, split_words, write_texts
from nasty_lightning.inference import tagger

ROWS = [
    {"text": "I don't know, it's 2,000 U.S. dollars!", "label": "pos", "id": "1"},
    {"text": 'She said "no, thanks"\nand left.', "label": "neg|sad", "id": "2"},  # quotes, comma, newline
    {"text": "Zürich – naïve café", "label": "neu", "id": "3"},
    {"text": "  spaces around  ", "label": "pos", "id": "4"},
]


def table(rows: list[dict], separator: str = ",", **options) -> bytes:
    """Rows as the csv module writes them (default dialect: CRLF, minimal quoting), a header first."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, **options)
    writer.writerow(list(rows[0]))
    writer.writerows([list(r.values()) for r in rows])
    return out.getvalue().encode()


def jsonl(objects: list[dict]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()


JSON_ROWS = [
    {"text": r["text"], "label": r["label"].split("|") if "|" in r["label"] else r["label"], "meta": {"id": 1.5}}
    for r in ROWS
]
FILES = {
    "a.csv": table(ROWS),
    "a.tsv": table(ROWS, "\t"),
    "lf.tsv": table(ROWS, "\t", lineterminator="\n"),
    "all_quoted.csv": table(ROWS, quoting=csv.QUOTE_ALL),
    "bom.csv": b"\xef\xbb\xbf" + table(ROWS),
    "a.jsonl": jsonl(JSON_ROWS),
    "ints.jsonl": jsonl([{"text": "good", "label": 1}, {"text": "bad", "label": 0}]),
}


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def own_labels(sentences, column: str = "label") -> dict[str, list[str | None]]:
    return {column: [s.sentence_label(column) for s in sentences]}


@pytest.mark.parametrize("name", FILES)
def test_reading_and_writing_back_its_own_labels_gives_the_same_bytes(tmp_path, name):
    path = write(tmp_path, name, FILES[name])
    sentences = read_texts(path)
    assert write_texts(path, sentences, own_labels(sentences)).encode() == FILES[name]


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl"])
def test_rows_become_sentences_of_split_words(tmp_path, name):
    sentences = read_texts(write(tmp_path, name, FILES[name]))
    assert [s.words for s in sentences] == [split_words(r["text"]) for r in ROWS]
    assert [s.sentence_label("label") for s in sentences] == ["pos", "neg|sad", "neu", "pos"]
    assert [dict(s.tokens.metadata) for s in sentences] == [{"text": r["text"], "label": r["label"]} for r in ROWS]
    first_lines = [1, 2, 3, 4] if name.endswith(".jsonl") else [2, 3, 5, 6]  # the header, and a two-line row
    assert [s.line for s in sentences] == first_lines
    assert [s.word_lines for s in sentences] == [
        [n] * len(s.words) for n, s in zip(first_lines, sentences, strict=True)
    ]
    token = sentences[2].tokens[1]
    assert token["id"] == 2 and token["form"] == "–"
    assert [token[f] for f in CONLLU_FIELDS[2:]] == ["_"] * 8
    assert [t["id"] for t in sentences[0].tokens] == list(range(1, 15))


def test_the_splitter_is_also_importable_from_the_tagger():
    assert tagger.split_words is split_words and tagger.word_spans is texts.word_spans
    assert texts.word_spans("it's") == [("it", 0, 2), ("'s", 2, 4)]


def test_a_quoted_csv_cell_keeps_its_comma_newline_and_quotes(tmp_path):
    path = write(tmp_path, "q.csv", b'text,label\r\n"a, ""b""\r\nc",x\r\nnext,y\r\n')
    first, second = read_texts(path)
    assert first.tokens.metadata["text"] == 'a, "b"\r\nc'
    assert first.words == ["a", ",", '"', "b", '"', "c"]
    assert (first.line, second.line) == (2, 4)


def test_multi_label_in_each_format(tmp_path):
    csv_path = write(tmp_path, "m.csv", b"text,label\nt,a|b\nu, a | b |\nv,c\n")
    tsv_path = write(tmp_path, "m.tsv", b"text\tlabel\nt\ta|b\nu\t a | b |\nv\tc\n")
    json_path = write(tmp_path, "m.jsonl", jsonl([{"text": "t", "label": "a|b"}, {"text": "u", "label": ["a", 7]}]))
    for path in (csv_path, tsv_path):
        assert [s.sentence_label("label") for s in read_texts(path)] == ["a|b", "a|b", "c"]
    assert [s.sentence_label("label") for s in read_texts(json_path)] == ["a|b", "a|7"]


def test_several_label_columns_and_labels_not_required(tmp_path):
    path = write(tmp_path, "s.tsv", b"topic\ttext\tlabel\nsport\tGoal!\t\nnews\tRain.\t_\n")
    sentences = read_texts(path, label_columns=("label", "topic", "genre"), label_required=False)
    assert [dict(s.tokens.metadata) for s in sentences] == [
        {"text": "Goal!", "label": None, "topic": "sport", "genre": None},
        {"text": "Rain.", "label": None, "topic": "news", "genre": None},
    ]
    path = write(tmp_path, "s.jsonl", jsonl([{"text": "a"}, {"text": "b", "label": None}, {"text": "c", "label": []}]))
    assert [s.sentence_label("label") for s in read_texts(path, label_required=False)] == [None, None, None]
    path = write(tmp_path, "c.csv", b"sentence,gold\nHi,x\n")
    assert read_texts(path, "sentence", ("gold",))[0].sentence_label("gold") == "x"


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl"])
def test_changed_labels_are_written_as_the_csv_module_and_json_dumps_write_them(tmp_path, name):
    path = write(tmp_path, name, FILES[name])
    new = ["neg", "pos", "neu|odd", "pos"]  # rows 1, 2 and 3 change, row 4 does not
    rows = [r | {"label": label} for r, label in zip(ROWS, new, strict=True)]
    if name.endswith(".jsonl"):  # a column that holds lists is written as lists
        changed = [o | {"label": label.split("|")} for o, label in zip(JSON_ROWS[:3], new[:3], strict=True)]
        expected = jsonl([*changed, JSON_ROWS[3]])  # the last row is kept as it was: a string
    else:
        expected = table(rows, "\t" if name.endswith(".tsv") else ",")
    assert write_texts(path, read_texts(path), {"label": new}).encode() == expected


def test_a_predicted_column_the_header_lacks_is_added_at_the_end(tmp_path):
    path = write(tmp_path, "n.csv", b"id,text\n1,Hello there\n\n2,Bye\n")
    sentences = read_texts(path, label_required=False)
    out = write_texts(path, sentences, {"label": ["greeting|polite", None], "id": ["1", "9"]})
    assert out == "id,text,label\n1,Hello there,greeting|polite\n\n9,Bye,\n"  # LF ends and the blank line kept


def test_jsonl_labels_are_set_as_strings_or_lists(tmp_path):
    path = write(tmp_path, "t.jsonl", b'{"text": "a", "n": 1}\n\n{"label": "x", "text": "b"}\r\n')
    sentences = read_texts(path, label_required=False)
    assert [s.line for s in sentences] == [1, 3]
    out = write_texts(path, sentences, {"label": ["y", "x"]})
    assert out == '{"text": "a", "n": 1, "label": "y"}\n\n{"label": "x", "text": "b"}\r\n'
    out = write_texts(path, sentences, {"label": ["y|z", None]})
    assert out == '{"text": "a", "n": 1, "label": ["y", "z"]}\n\n{"label": [], "text": "b"}\r\n'


def test_a_label_is_read_from_a_conllu_comment(tmp_path):
    path = tmp_path / "g.conllu"
    word = "1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_"
    path.write_text(f"# genre = news\n# text = Hi\n{word}\n\n# genre = _\n{word}\n\n{word}\n\n")
    sentences = read_sentences(path)
    assert [s.sentence_label("genre") for s in sentences] == ["news", None, None]
    assert sentences[0].sentence_label("text") == "Hi"


def test_text_files_are_known_by_suffix():
    assert TEXT_SUFFIXES == (".tsv", ".csv", ".jsonl")
    assert [is_text_file(p) for p in ["a.tsv", "b/A.CSV", "c.jsonl", "d.conllu", "e.txt", "f.json"]] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_missing_file_or_another_suffix_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"^cannot read .*nope\.csv \(No such file or directory\)$"):
        read_texts(tmp_path / "nope.csv")
    with pytest.raises(UserError, match=r"is not a file of labelled texts \(a \.tsv, \.csv or \.jsonl file\)$"):
        read_texts(write(tmp_path, "a.json", b"{}"))
    with pytest.raises(UserError, match="the label column 'text' is the text's name"):
        read_texts(write(tmp_path, "a.csv", FILES["a.csv"]), label_columns=("text",))


CSV_EXAMPLE = "'text,label'"
JSON_EXAMPLE = '{"text": "...", "label": "..."}'
MALFORMED = [
    ("empty.csv", b"", 1, f"the file is empty (it starts with a header naming its columns: {CSV_EXAMPLE})"),
    ("blank.tsv", b"\n\r\n", 1, "the file is empty (it starts with a header naming its columns: 'text\\tlabel')"),
    ("header_only.csv", b"text,label\r\n", 1, "the file holds no row after its header"),
    ("empty.jsonl", b"\n \n", 1, f"the file holds no JSON object (it has one a line: {JSON_EXAMPLE})"),
    (
        "no_text.csv",
        b"\nsentence, label\nHi,x\n",
        2,
        "no column 'text' in the header (its columns: sentence, label); name the text column with --data.text_column",
    ),
    (
        "no_label.tsv",
        b"text\tgold\nHi\tx\n",
        1,
        "no column 'label' in the header (its columns: text, gold); name the label column with --data.label_column",
    ),
    ("twice.csv", b"text,label,text\na,b,c\n", 1, "the column 'text' appears twice in the header (rename one)"),
    (
        "count.csv",
        b"text,label\na,b\nc,d,e\n",
        3,
        'expected 2 cells as in the header, found 3 (a cell with a comma inside is quoted whole: "...")',
    ),
    (
        "count.tsv",
        b"text\tlabel\na\tb\n\nc\n",
        4,
        'expected 2 cells as in the header, found 1 (a cell with a tab inside is quoted whole: "...")',
    ),
    (
        "unclosed.csv",
        b'text,label\n"a,b\nc,d\n',
        2,
        "a quoted cell is never closed (it runs from this row to the end of the file)",
    ),
    (
        "after_quote.tsv",
        b'text\tlabel\nok\tx\n"a" b\tx\n',
        3,
        'text after the closing " of a quoted cell (quote the whole cell, with "" for each " inside it)',
    ),
    ("cr.csv", b"text,label\na\rb,x\n", 2, "a carriage return inside an unquoted cell (quote the cell)"),
    ("empty_text.csv", b"text,label\na,x\n,x\n", 3, "empty text in 'text' (give the row a text, or remove it)"),
    ("space_text.tsv", b"text\tlabel\n \t x\n", 2, "empty text in 'text' (give the row a text, or remove it)"),
    ("no_label.csv", b"text,label\na,x\nb, \n", 3, "no label in 'label' (every row of a file to learn from needs one)"),
    ("underscore.csv", b"text,label\na,_\n", 2, "no label in 'label' (every row of a file to learn from needs one)"),
    ("utf8.csv", b"text,label\na,x\nb\xff,x\n", 3, "invalid UTF-8 at byte 2 of the line"),
    ("utf8.jsonl", b'{"text": "a", "label": "x"}\n\xe9\n', 2, "invalid UTF-8 at byte 1 of the line"),
    (
        "json.jsonl",
        b'{"text": "a", "label": "x"}\n\n{"text": "b",}\n',
        3,
        "invalid JSON (Expecting property name enclosed in double quotes at column 14)",
    ),
    ("list.jsonl", b'["a", "x"]\n', 1, 'expected a JSON object ({...}) on the line, found ["a", "x"]'),
    ("number_text.jsonl", b'{"text": 5, "label": "x"}\n', 1, "the value of 'text' is not a string (5)"),
    ("null_text.jsonl", b'{"text": null, "label": "x"}\n', 1, "the value of 'text' is not a string (null)"),
    (
        "empty_text.jsonl",
        b'{"text": " \\n", "label": "x"}\n',
        1,
        "empty text in 'text' (give the row a text, or remove it)",
    ),
    (
        "no_text.jsonl",
        b'{"sentence": "a", "label": "x"}\n',
        1,
        "no key 'text' in this object (its keys: 'sentence', 'label'); name the text's key with --data.text_column",
    ),
    (
        "no_label.jsonl",
        b'{"text": "a", "label": "x"}\n{"text": "b"}\n',
        2,
        "no key 'label' in this object (its keys: 'text'); name the label's key with --data.label_column",
    ),
    (
        "null.jsonl",
        b'{"text": "a", "label": null}\n',
        1,
        "no label in 'label' (every row of a file to learn from needs one)",
    ),
    (
        "empty_list.jsonl",
        b'{"text": "a", "label": [" "]}\n',
        1,
        "no label in 'label' (every row of a file to learn from needs one)",
    ),
    (
        "float.jsonl",
        b'{"text": "a", "label": 1.0}\n',
        1,
        "the value of 'label' is not a label (1.0): give a string, an integer or a list of them",
    ),
    (
        "bool.jsonl",
        b'{"text": "a", "label": true}\n',
        1,
        "the value of 'label' is not a label (true): give a string, an integer or a list of them",
    ),
    (
        "object.jsonl",
        b'{"text": "a", "label": {"x": 1}}\n',
        1,
        "the value of 'label' is not a label ({\"x\": 1}): give a string, an integer or a list of them",
    ),
    (
        "nested.jsonl",
        b'{"text": "a", "label": ["x", ["y"]]}\n',
        1,
        'the value of \'label\' is not a label (["x", ["y"]]): give a string, an integer or a list of them',
    ),
]


@pytest.mark.parametrize(("name", "data", "line", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_file_is_reported_at_its_line(tmp_path, name, data, line, message):
    path = write(tmp_path, name, data)
    with pytest.raises(DataError) as raised:
        read_texts(path)
    assert (raised.value.line, raised.value.message) == (line, message)
    assert str(raised.value) == f"{path}:{line}: {message}"


def test_a_text_with_no_word_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(texts, "split_words", lambda text: [])  # every text with a non-space character has a word
    with pytest.raises(DataError) as raised:
        read_texts(write(tmp_path, "a.csv", b"text,label\nHi,x\n"))
    assert str(raised.value).endswith("a.csv:2: no word in 'text' (give the row a text, or remove it)")


def test_a_text_of_no_word_is_only_whitespace():
    """The splitter finds a word in every text that is not all whitespace, so "empty text" is the usual error."""
    assert [chr(c) for c in range(0x110000) if not chr(c).isspace() and not split_words(chr(c))] == []


def test_split_words_follows_ud():
    assert split_words("I don't know, it's 2,000 U.S. dollars!") == [
        "I",
        "do",
        "n't",
        "know",
        ",",
        "it",
        "'s",
        "2,000",
        "U",
        ".",
        "S",
        ".",
        "dollars",
        "!",
    ]
