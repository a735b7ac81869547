"""CoNLL-2003 files and IOB1 / BIOES tags, read as IOB2."""

from __future__ import annotations

import pytest

from nasty_lightning.errors import DataError
from nasty_lightning.formats.conllu import check_labels, fields_for, read_sentences, with_misc_value
from nasty_lightning.formats.ner_files import iob1_to_iob2, scheme, to_bio

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
I PRP B-NP O
saw VBD B-VP O
Paris NNP B-NP I-LOC
Lyon NNP I-NP B-LOC

-DOCSTART- -X- -X- O

Rome NNP B-NP I-LOC
"""


def test_conll2003_is_read_with_documents_and_iob1_converted(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL2003)
    assert fields_for(path) == ("id", "form", "pos", "chunk", "ner")
    with pytest.warns(UserWarning, match=r"eng.train: IOB1 tags, converted to IOB2 on read"):
        sentences = read_sentences(path)
    assert [s.words for s in sentences] == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn", "I", "saw", "Paris", "Lyon"],
        ["Rome"],
    ]
    assert sentences[0].labels("ner") == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert sentences[1].labels("ner") == ["B-PER", "I-PER", "O", "O", "B-LOC", "B-LOC"]  # Lyon: a second LOC
    assert sentences[2].labels("ner") == ["B-LOC"] and sentences[1].word_lines == [9, 10, 11, 12, 13, 14]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("EU NNP B-NP\n", 1, "expected 4 columns (token POS chunk NER) separated by one space"),
        ("EU NNP  B-NP I-ORG\n", 1, "expected 4 columns"),
        ("-DOCSTART- -X- -X- O\nEU NNP B-NP I-ORG\n-DOCSTART- -X- -X- O\n", 3, "a -DOCSTART- line inside a sentence"),
        ("-DOCSTART- -X- -X- O\n\n", 1, "the file holds no sentence"),
    ],
)
def test_malformed_conll2003_lines_are_reported(tmp_path, text, line, message):
    path = tmp_path / "bad.conll03"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_sentences(path)
    assert str(err.value).startswith(f"{path}:{line}: {message}")


def test_bioes_becomes_iob2(tmp_path):
    path = tmp_path / "x.iob2"
    path.write_text("1\tAnn\tB-PER\t-\t-\n2\tLee\tE-PER\t-\t-\n3\tin\tO\t-\t-\n4\tRome\tS-LOC\t-\t-\n\n")
    with pytest.warns(UserWarning, match="BIOES tags, converted to IOB2 on read"):
        [sentence] = read_sentences(path)
    assert sentence.labels("ner") == ["B-PER", "I-PER", "O", "B-LOC"]


def test_schemes():
    assert scheme([["B-PER", "I-PER", "O", "I-LOC"]]) == "IOB2"  # an IOB2 error stays as it is
    assert scheme([["I-PER", "I-PER", "B-PER", "O"]]) == "IOB1" and scheme([["O", "O"]]) == "IOB2"
    assert scheme([["U-PER", "O", "B-LOC", "L-LOC"]]) == "BIOES"
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-LOC"]) == [
        "B-PER",
        "I-PER",
        "B-PER",
        "B-LOC",
        "O",
        "B-LOC",
    ]
    assert to_bio(["S-X", "B-Y", "I-Y", "E-Y", "O", "U-Z", "L-Z"]) == ["B-X", "B-Y", "I-Y", "I-Y", "O", "B-Z", "I-Z"]


MISC_NER = """# text = Ann's in São Paulo.
1-2\tAnn's\t_\t_\t_\t_\t_\t_\t_\t_
1\tAnn\tAnn\tPROPN\t_\t_\t0\troot\t_\tNER=S-PER
2\t's\tbe\tAUX\t_\t_\t1\tcop\t_\tNER=O
3\tin\tin\tADP\t_\t_\t4\tcase\t_\tNER=O
4\tSão\tSão\tPROPN\t_\t_\t1\tobl\t_\tNER=B-LOC
5\tPaulo\tPaulo\tPROPN\t_\t_\t4\tflat\t_\tSpaceAfter=No|NER=E-LOC
6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\tNER=O

"""


def test_conllu_misc_ner_is_a_column(tmp_path):
    path = tmp_path / "ner.conllu"
    path.write_text(MISC_NER)
    with pytest.warns(UserWarning, match="BIOES tags, converted to IOB2 on read"):
        [sentence] = read_sentences(path)
    assert sentence.words == ["Ann", "'s", "in", "São", "Paulo", "."]
    assert sentence.labels("ner") == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert sentence.labels("upos")[0] == "PROPN"  # the other columns are as they were
    check_labels(path, [sentence], "ner")
    # A word without NER= has no value: a file to train on must tag every word.
    path.write_text(MISC_NER.replace("NER=O\n3", "_\n3"))
    with pytest.warns(UserWarning):
        sentences = read_sentences(path)
    with pytest.raises(DataError, match=r"ner.conllu:4: word \"'s\" has no value in the column 'ner'"):
        check_labels(path, sentences, "ner")
    path.write_text(MISC_NER.replace("NER=", "Entity="))
    with pytest.raises(DataError, match=r"no column 'ner' in this file .*\(named entities in CoNLL-U go in MISC"):
        check_labels(path, read_sentences(path), "ner")


@pytest.mark.parametrize(
    ("misc", "expected"),
    [("_", "NER=B-PER"), ("SpaceAfter=No", "SpaceAfter=No|NER=B-PER"), ("SpaceAfter=No ", "SpaceAfter=No|NER=B-PER"),
     ("NER=O|SpaceAfter=No", "NER=B-PER|SpaceAfter=No"), ("NERD=1", "NERD=1|NER=B-PER")],
)  # fmt: skip
def test_misc_value_is_set_in_place(misc, expected):
    assert with_misc_value(misc, "NER", "B-PER") == expected
