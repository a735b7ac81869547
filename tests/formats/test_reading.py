"""Reading CoNLL-U: which words carry labels, what is tolerated, what is rejected (and where)."""

from __future__ import annotations

import pytest

from nasty_lightning.errors import DataError
from nasty_lightning.formats.conllu import UNDERSCORE_IS_A_LABEL, check_labels, read_sentences

MWT_AND_EMPTY = """# sent_id = 1
# text = Vámonos al mar.
1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_
3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_
3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_
4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_
4.1\tsi\tsi\tSCONJ\t_\t_\t_\t_\t1:mark\t_
5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_

# sent_id = 2
1\tSí\tsí\tINTJ\t_\t_\t0\troot\t_\t_
"""


def write(tmp_path, text: str | bytes, name: str = "f.conllu"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_only_syntactic_words_are_labelled(tmp_path):
    sentences = read_sentences(write(tmp_path, MWT_AND_EMPTY))
    assert [s.words for s in sentences] == [["Vamos", "nos", "a", "el", "mar", "."], ["Sí"]]
    assert sentences[0].labels("upos") == ["VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT"]
    assert sentences[0].tokens.metadata["sent_id"] == "1"
    assert len(sentences[0].tokens) == 9  # ranges and the empty node are kept for writers
    assert sentences[0].word_lines == [4, 5, 7, 8, 10, 11]
    assert sentences[1].line == 13  # its first line: the comment


def test_missing_final_blank_line_loses_nothing(tmp_path):
    sentences = read_sentences(write(tmp_path, MWT_AND_EMPTY.rstrip("\n")))
    assert len(sentences) == 2 and sentences[1].words == ["Sí"]


def test_bom_and_crlf_are_tolerated(tmp_path):
    data = b"\xef\xbb\xbf" + MWT_AND_EMPTY.replace("\n", "\r\n").encode("utf-8")
    sentences = read_sentences(write(tmp_path, data))
    assert sentences[0].words[0] == "Vamos" and sentences[0].labels("misc")[4] == "SpaceAfter=No"


def test_underscore_label_is_missing(tmp_path):
    text = "1\tx\tx\t_\t_\t_\t0\troot\t_\t_\n\n"
    assert read_sentences(write(tmp_path, text))[0].labels("upos") == [None]


FEATS_AND_XPOS = """# text = The dog barks
1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_
2\tdog\tdog\t_\t_\tNumber=Sing\t3\tnsubj\t_\t_
3\tbarks\tbark\tVERB\tVBZ\tMood=Ind|Number=Sing|Person=3\t0\troot\t_\t_
"""


def test_underscore_is_a_label_in_feats_and_xpos_only(tmp_path):
    assert UNDERSCORE_IS_A_LABEL == {"feats", "xpos"}
    [sentence] = read_sentences(write(tmp_path, FEATS_AND_XPOS))
    assert sentence.labels("feats") == ["_", "Number=Sing", "Mood=Ind|Number=Sing|Person=3"]  # _: no features
    assert sentence.labels("xpos") == ["_", "_", "VBZ"]  # _: no XPOS
    assert sentence.labels("upos") == ["DET", None, "VERB"]  # _: missing
    assert sentence.labels("deps") == [None, None, None]


def test_check_labels_accepts_underscore_feats_and_xpos(tmp_path):
    path = write(tmp_path, FEATS_AND_XPOS)
    sentences = read_sentences(path)
    check_labels(path, sentences, "feats")
    check_labels(path, sentences, "xpos")
    everywhere = FEATS_AND_XPOS.replace("\tVBZ\tMood=Ind|Number=Sing|Person=3\t", "\t_\t_\t")
    path = write(tmp_path, everywhere, "none.conllu")
    check_labels(path, read_sentences(path), "feats")  # no word has features: still a label on every word
    check_labels(path, read_sentences(path), "xpos")


def test_check_labels_still_reports_underscore_upos(tmp_path):
    path = write(tmp_path, FEATS_AND_XPOS)
    sentences = read_sentences(path)
    with pytest.raises(DataError) as err:
        check_labels(path, sentences, "upos")
    assert str(err.value).startswith(f"{path}:3: word 'dog' has no value in the column 'upos'")
    with pytest.raises(DataError) as err:
        check_labels(path, sentences, "deps")
    assert str(err.value).startswith(f"{path}:1: no word has a value in the column 'deps'")


def test_forms_with_double_spaces_stay_whole(tmp_path):
    text = "1\t10  000\t10000\tNUM\t_\t_\t0\troot\t_\t_\n\n"
    assert read_sentences(write(tmp_path, text))[0].words == ["10  000"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("1\tx\tx\tX\t_\t_\t0\troot\t_\n\n", 1, "expected 10 tab-separated columns, found 9"),
        ("1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n3\ty\ty\tX\t_\t_\t1\tdep\t_\t_\n\n", 2, "word ID 3 out of sequence"),
        ("1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n\n", 2, "duplicate word ID 1"),
        (
            "1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n# c\n2\ty\ty\tX\t_\t_\t1\tdep\t_\t_\n\n",
            2,
            "comment line inside a sentence",
        ),
        ("one\tx\tx\tX\t_\t_\t0\troot\t_\t_\n\n", 1, "invalid ID 'one'"),
        ("2-3\tx\t_\t_\t_\t_\t_\t_\t_\t_\n1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n\n", 1, "multiword token range 2-3"),
        ("\n\n", 1, "the file holds no sentence"),
    ],
)
def test_malformed_lines_are_rejected_with_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_sentences(path)
    assert str(err.value).startswith(f"{path}:{line}: {message}")


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, b"1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n\n2\t\xff\tx\n")
    with pytest.raises(DataError, match=r":3: invalid UTF-8"):
        read_sentences(path)


def test_iob2_files_have_their_own_columns(tmp_path):
    text = "# text = New York\n1\tNew\tB-LOC\t-\t-\n2\tYork\tI-LOC\t-\t-\n\n"
    sentences = read_sentences(write(tmp_path, text, "ner.iob2"))
    assert sentences[0].labels("ner") == ["B-LOC", "I-LOC"]
