"""One malformed snippet per validation rule of ``reading``: each must fail at FILE:LINE with its message,
through ``nasty-train``'s ``main()`` (exit status 2, one line, no traceback); a few through the installed
command.

Token lines are built by ``word`` and ``mwt`` (tab-separated, every other column ``_`` or a plain
value) so that a snippet shows only what is wrong with it; the line a rule must report is the
index (from 1) of the offending line in the snippet.
"""

from __future__ import annotations

import warnings

import pytest
from clirun import nasty_train

from nasty_lightning.commands.cli import main
from nasty_lightning.formats.conllu import CONLLU_FIELDS, check_labels, read_sentences


def word(id_: str, form: str = "w", **values: str) -> str:
    """A word (or empty node) line: every column filled, ``values`` replacing some by name."""
    row = dict(zip(CONLLU_FIELDS, [id_, form, form.lower(), "X", "_", "_", "0", "dep", "_", "_"], strict=True))
    row.update(values)
    return "\t".join(row.values())


def mwt(id_: str, form: str = "ww", **values: str) -> str:
    """A multiword-token range line: ``_`` in every column but ID and FORM, unless ``values`` say so."""
    row = dict.fromkeys(CONLLU_FIELDS, "_") | {"id": id_, "form": form} | values
    return "\t".join(row.values())


def conllu(*lines: str) -> str:
    """A file of these lines; an empty string is a blank line; one blank line ends the file."""
    return "\n".join(lines) + "\n\n"


def write(tmp_path, text: str | bytes, name: str = "f.conllu"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def fit_args(path, column: str = "upos") -> list[str]:
    """``fit`` on a training file: it is read (and rejected) before any model loads."""
    run = path.parent / "run"
    return ["fit", "--data.train_file", str(path), "--data.val_file", str(path), "--data.label_column", column,
            "--trainer.default_root_dir", str(run)]  # fmt: skip


def cli_error(capsys, path, column: str = "upos") -> str:
    """The message of ``nasty-train fit`` on ``path``, checking its form: one line, exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(fit_args(path, column))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nasty-train: error: ") and err.count("\n") == 1, err
    return err.removeprefix("nasty-train: error: ")


ERRORS = [
    # columns
    pytest.param(conllu(word("1")[:-2]), 1, "expected 10 tab-separated columns, found 9", id="too-few-columns"),
    pytest.param(conllu(word("1") + "\t_"), 1, "expected 10 tab-separated columns, found 11", id="too-many-columns"),
    pytest.param(
        conllu("1 w w X _ _ 0 dep _ _"), 1, "expected 10 tab-separated columns, found 1", id="spaces-not-tabs"
    ),
    pytest.param(conllu(word("1"), word("2", lemma="")), 2, "empty value in the column 'lemma'", id="empty-lemma"),
    pytest.param(conllu(word("1", form="")), 1, "empty value in the column 'form'", id="empty-form"),
    pytest.param(conllu(word("")), 1, "empty value in the column 'id'", id="empty-id"),
    pytest.param(conllu(word("1", misc="")), 1, "empty value in the column 'misc'", id="empty-last-column"),
    pytest.param(conllu(word("1", form=" w")), 1, "leading whitespace in the column 'form'", id="leading-space-form"),
    pytest.param(conllu(word("1", lemma="w ")), 1, "trailing whitespace in the column 'lemma'", id="trailing-lemma"),
    pytest.param(conllu(word("1", upos="X ")), 1, "trailing whitespace in the column 'upos'", id="trailing-space-upos"),
    pytest.param(conllu(word("1", deprel="\u00a0dep")), 1, "leading whitespace in the column 'deprel'", id="nbsp"),
    pytest.param(conllu(word("1", upos="NO UN")), 1, "whitespace inside the column 'upos'", id="space-inside-upos"),
    pytest.param(conllu(word("1", feats="A=B\x0bC=D")), 1, "whitespace inside the column 'feats'", id="vtab-inside"),
    # word IDs
    pytest.param(conllu("one" + word("1")[1:]), 1, "invalid ID 'one'", id="invalid-id"),
    pytest.param(conllu(word("01")), 1, "invalid ID '01'", id="leading-zero-id"),
    pytest.param(conllu(word("1.0")), 1, "invalid ID '1.0'", id="empty-node-decimal-zero"),
    pytest.param(conllu(word("2")), 1, "word ID 2 out of sequence (expected 1)", id="first-word-not-1"),
    pytest.param(conllu(word("1"), word("3")), 2, "word ID 3 out of sequence (expected 2)", id="word-skipped"),
    pytest.param(conllu(word("1"), word("2"), word("2")), 3, "duplicate word ID 2", id="duplicate-word"),
    pytest.param(conllu(word("1"), word("2"), word("1")), 3, "duplicate word ID 1", id="word-id-goes-back"),
    pytest.param(conllu(word("1"), "", word("1"), word("1")), 4, "duplicate word ID 1", id="duplicate-2nd-sentence"),
    # multiword-token ranges
    pytest.param(conllu(mwt("3-2"), word("1")), 1, "invalid multiword token range 3-2", id="range-backwards"),
    pytest.param(conllu(mwt("0-1"), word("1")), 1, "invalid multiword token range 0-1", id="range-from-0"),
    pytest.param(conllu(mwt("1-1"), word("1")), 1, "invalid multiword token range 1-1", id="range-of-one"),
    pytest.param(
        conllu(mwt("1-2"), mwt("2-3"), word("1"), word("2"), word("3")),
        2,
        "multiword token range 2-3 overlaps the range 1-2 on line 1",
        id="ranges-overlap-ahead",
    ),
    pytest.param(
        conllu(mwt("1-2"), word("1"), word("2"), mwt("2-3"), word("3")),
        4,
        "multiword token range 2-3 overlaps the range 1-2 on line 1",
        id="range-after-its-start",
    ),
    pytest.param(
        conllu(mwt("1-3"), word("1"), mwt("2-3"), word("2"), word("3")),
        3,
        "multiword token range 2-3 overlaps the range 1-3 on line 1",
        id="range-inside-range",
    ),
    pytest.param(
        conllu(mwt("2-3"), word("1")), 1, "multiword token range 2-3 does not start at word 1", id="range-early"
    ),
    pytest.param(
        conllu(word("1"), mwt("2-3"), word("2"), "", word("1")),
        2,
        "multiword token range 2-3 runs past the last word of the sentence (2)",
        id="range-past-the-end",
    ),
    pytest.param(
        conllu(word("1"), mwt("2-3"), word("2")).rstrip("\n"),
        2,
        "multiword token range 2-3 runs past the last word of the sentence (2)",
        id="range-past-the-end-of-file",
    ),
    pytest.param(
        conllu(mwt("1-2", lemma="ww"), word("1"), word("2")),
        1,
        "multiword token range 1-2 has a value in the column 'lemma'",
        id="range-with-lemma",
    ),
    pytest.param(
        conllu(mwt("1-2", head="0", deprel="root"), word("1"), word("2")),
        1,
        "multiword token range 1-2 has a value in the column 'head'",
        id="range-with-head",
    ),
    # empty nodes
    pytest.param(
        conllu(word("1"), word("2"), word("1.1")), 3, "empty node 1.1 is misplaced (expected 2.N)", id="node-late"
    ),
    pytest.param(
        conllu(word("1"), word("2.1"), word("2")), 2, "empty node 2.1 is misplaced (expected 1.N)", id="node-early"
    ),
    pytest.param(
        conllu(word("1"), word("1.2"), word("1.1")),
        2,
        "empty node 1.2 is out of order (expected 1.1)",
        id="node-2-first",
    ),
    pytest.param(
        conllu(word("1"), word("1.1"), word("1.1")), 3, "empty node 1.1 is out of order (expected 1.2)", id="node-twice"
    ),
    # comments and blocks
    pytest.param(conllu(word("1"), "# c", word("2")), 2, "comment line inside a sentence", id="comment-inside"),
    pytest.param(conllu("# c", "", word("1")), 1, "comment lines with no sentence after them", id="comments-alone"),
    pytest.param(conllu(word("1"), "", "# c"), 3, "comment lines with no sentence after them", id="comments-at-end"),
    pytest.param(conllu("# c", word("0.1"), word("0.2")), 2, "a sentence with no word", id="empty-nodes-only"),
    pytest.param(conllu(word("1"), "", mwt("1-2")), 3, "a sentence with no word", id="range-only"),
    pytest.param("", 1, "the file holds no sentence", id="empty-file"),
    pytest.param("\n\n\n", 1, "the file holds no sentence", id="blank-lines-only"),
    pytest.param(b"\xef\xbb\xbf", 1, "the file holds no sentence", id="bom-only"),
    pytest.param(word("1").encode() + b"\n\n" + b"2\tw\xe9\n", 3, "invalid UTF-8 at byte 4 of the line", id="latin-1"),
]


@pytest.mark.parametrize("text, line, message", ERRORS)
def test_each_rule_names_file_line_and_problem(tmp_path, capsys, text, line, message):
    path = write(tmp_path, text)
    assert cli_error(capsys, path).startswith(f"{path}:{line}: {message}")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["too-few-columns", "latin-1", "empty-file"])
def test_the_installed_command_reports_them_too(tmp_path, case):
    [(text, line, message)] = [p.values for p in ERRORS if p.id == case]
    path = write(tmp_path, text)
    result = nasty_train(*fit_args(path))
    assert result.returncode == 2
    assert result.stderr.endswith(f"\nnasty-train: error: {path}:{line}: {message}\n")  # after "Seed set to 42"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text, line, message",
    [
        pytest.param("1\tNew\tB-LOC\t-\n\n", 1, "expected 5 tab-separated columns, found 4", id="columns"),
        pytest.param("1\tNew\tB-LOC\t-\t-\n1\tYork\tI-LOC\t-\t-\n\n", 2, "duplicate word ID 1", id="duplicate"),
        pytest.param("1\tNew\tB LOC\t-\t-\n\n", 1, "whitespace inside the column 'ner'", id="space-in-label"),
        pytest.param("1\tNew\tB-LOC \t-\t-\n\n", 1, "trailing whitespace in the column 'ner'", id="trailing-label"),
        pytest.param(
            "1-2\tNY\tB-LOC\t_\t_\n1\tN\tB-LOC\t-\t-\n2\tY\tI-LOC\t-\t-\n\n",
            1,
            "multiword token range 1-2 has a value in the column 'ner'",
            id="range-with-label",
        ),
    ],
)
def test_iob2_files_follow_the_same_rules(tmp_path, capsys, text, line, message):
    path = write(tmp_path, text, "ner.iob2")
    assert cli_error(capsys, path, "ner").startswith(f"{path}:{line}: {message}")


CLEAN = conllu(
    "# sent_id = 1",
    "# text = Vámonos al mar.",
    mwt("1-2", "Vámonos"),
    word("1", "Vamos", upos="VERB"),
    word("2", "nos", upos="PRON"),
    mwt("3-4", "al"),
    word("3", "a", upos="ADP"),
    word("4", "el", upos="DET"),
    word("4.1", "si", upos="_", head="_", deprel="_"),
    word("4.2", "no", upos="_", head="_", deprel="_"),
    word("5", "mar", upos="NOUN", misc="SpaceAfter=No"),
    word("6", ".", upos="PUNCT"),
    "",
    "# sent_id = 2",
    "# text = 10 000 pesos",
    word("0.1", "hay", upos="_", head="_", deprel="_"),
    word("1", "10 000", lemma="10  000", upos="NUM", misc="Gloss=ten thousand"),
    word("2", "pesos", upos="NOUN"),
)


def summary(path) -> list:
    return [(s.line, s.word_lines, [dict(t) for t in s.tokens], dict(s.tokens.metadata)) for s in read_sentences(path)]


def test_the_clean_file_reads_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sentences = read_sentences(write(tmp_path, CLEAN))
    assert [s.words for s in sentences] == [["Vamos", "nos", "a", "el", "mar", "."], ["10 000", "pesos"]]
    assert sentences[1].labels("lemma")[0] == "10  000"


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="bom"),
        pytest.param(lambda text: text.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(), id="bom-and-crlf"),
        pytest.param(lambda text: text.removesuffix("\n"), id="no-final-blank-line"),
        pytest.param(lambda text: text.rstrip("\n"), id="no-final-newline"),
        pytest.param(lambda text: text.rstrip("\n").replace("\n", "\r\n"), id="crlf-no-final-newline"),
        pytest.param(lambda text: text + "\n\n", id="blank-lines-at-the-end"),
    ],
)
def test_tolerated_variants_read_like_the_clean_file(tmp_path, variant):
    clean = summary(write(tmp_path, CLEAN, "clean.conllu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert summary(write(tmp_path, variant(CLEAN))) == clean


def test_extra_blank_lines_between_sentences_are_tolerated(tmp_path):
    clean = read_sentences(write(tmp_path, CLEAN, "clean.conllu"))
    sentences = read_sentences(write(tmp_path, "\n\n" + CLEAN.replace("\n\n", "\n\n\n\n")))
    assert [[dict(t) for t in s.tokens] for s in sentences] == [[dict(t) for t in s.tokens] for s in clean]


@pytest.mark.parametrize(
    "text, line, message",
    [
        pytest.param(conllu(word("1"), " \t", word("1")), 2, "a line of only whitespace", id="whitespace-only-line"),
        pytest.param(
            conllu(word("1", misc="SpaceAfter=No ")), 1, "whitespace at an end of the column 'misc'", id="misc"
        ),
        pytest.param(conllu(word("1", form="cafe\u0301")), 1, "the line is not in Unicode NFC", id="not-nfc"),
        pytest.param(
            conllu("# text = ab", word("1", "a"), word("2", "b")),
            1,
            "the '# text' comment is not what the forms and SpaceAfter=No spell out",
            id="text-mismatch",
        ),
        pytest.param(
            conllu(
                "# text = catsat.",
                mwt("1-2", "catsat"),
                word("1", "cat"),
                word("2", "sat", misc="SpaceAfter=No"),
                word("3", "."),
            ),
            1,
            "the '# text' comment is not what",
            id="space-after-on-a-word-of-a-range",
        ),
    ],
)
def test_cosmetic_problems_are_warnings(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.warns(UserWarning) as record:
        sentences = read_sentences(path)
    assert len(record) == 1 and str(record[0].message).startswith(f"{path}:{line}: {message}")
    assert sentences[0].words  # the sentence is read all the same


def test_a_kind_of_warning_comes_once_per_file_with_a_count(tmp_path):
    path = write(tmp_path, conllu(word("1"), " ", word("1"), "\t", word("1"), " ", word("1")))
    with pytest.warns(UserWarning) as record:
        assert len(read_sentences(path)) == 4
    assert [str(w.message) for w in record] == [
        f"{path}:2: a line of only whitespace, read as a blank line (and 2 more lines like it)"
    ]


def test_iob2_text_comments_are_not_compared(tmp_path):
    text = "# text = New York!\n1\tNew\tB-LOC\t-\t-\n2\tYork\tI-LOC\t-\t-\n3\t!\tO\t-\t-\n\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_sentences(write(tmp_path, text, "ner.iob2"))[0].words == ["New", "York", "!"]


LABELS = [
    pytest.param(
        conllu(word("1", lemma="_"), word("2", lemma="_")),
        "f.conllu",
        "lemma",
        1,
        "no word has a value in the column 'lemma'",
        id="no-labels",
    ),
    pytest.param(
        CLEAN, "f.conllu", "ner", 1, "no column 'ner' in this file (its columns: id, form, lemma", id="conllu"
    ),
    pytest.param(
        "1\tNew\tB-LOC\t-\t-\n\n",
        "ner.iob2",
        "upos",
        1,
        "no column 'upos' in this file (its columns: id, form, ner, annotator1, annotator2)",
        id="no-such-column-iob2",
    ),
    pytest.param(
        conllu(word("1", upos="NOUN"), "", word("1", upos="NOUN"), word("2", "y", upos="_"), word("3", "z", upos="_")),
        "f.conllu",
        "upos",
        4,
        "word 'y' has no value in the column 'upos'",
        id="some-words-unlabelled",
    ),
    pytest.param(
        conllu(word("1", "x", upos="_"), word("1.1", upos="_"), word("2", upos="NOUN")),
        "f.conllu",
        "upos",
        1,
        "word 'x' has no value in the column 'upos'",
        id="unlabelled-before-labelled",
    ),
]


@pytest.mark.parametrize("text, name, column, line, message", LABELS)
def test_label_rules_name_file_line_and_problem(tmp_path, capsys, text, name, column, line, message):
    path = write(tmp_path, text, name)
    assert cli_error(capsys, path, column).startswith(f"{path}:{line}: {message}")


def test_labels_on_every_word_pass(tmp_path):
    path = write(tmp_path, CLEAN)
    assert check_labels(path, read_sentences(path), "upos") is None  # empty nodes need no label
    iob2 = write(tmp_path, "1\tNew\tB-LOC\t-\t-\n2\tYork\tI-LOC\t-\t-\n\n", "ner.iob2")
    assert check_labels(iob2, read_sentences(iob2), "ner") is None
