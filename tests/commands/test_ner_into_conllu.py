"""scripts/ner_into_conllu.py: a NER file's tags into the treebank its sentences come from, every other byte kept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from nasty_lightning.formats.conllu import read_sentences

SCRIPT = Path(__file__).parents[2] / "scripts" / "ner_into_conllu.py"
TREEBANK = """\
# sent_id = a-1
# text = Ann can't go.
1\tAnn\tAnn\tPROPN\tNNP\t_\t3\tnsubj\t_\tNER=B-ORG
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = a-2
# text = Not in the NER file.
1\tNot\tnot\tPART\tRB\t_\t0\troot\t_\t_

# sent_id = b-1
# text = #tag sharing
1\t#tag\t#tag\tSYM\tNN\t_\t2\tcompound\t_\t_
2\tsharing\tshare\tNOUN\tNN\t_\t0\troot\t_\t_

"""


MERGED = """\
# sent_id = b-1
# text = #tag sharing
1\t#tag\t#tag\tSYM\tNN\t_\t2\tcompound\t_\tNER=O
2\tsharing\tshare\tNOUN\tNN\t_\t0\troot\t_\tNER=O

# sent_id = a-1
# text = Ann can't go.
1\tAnn\tAnn\tPROPN\tNNP\t_\t3\tnsubj\t_\tNER=B-PER
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\tNER=O
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\tNER=O
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No|NER=O
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\tNER=O

"""


def iob2(*sentences: tuple[str, list[tuple[str, str]]]) -> str:
    """An IOB2 file of (sent_id, [(word, tag)]) sentences, as Universal NER writes them."""
    blocks = []
    for sent_id, words in sentences:
        lines = [f"# sent_id = {sent_id}", *(f"{i}\t{w}\t{t}\t-\t-" for i, (w, t) in enumerate(words, start=1))]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + "\n"


def merge(tmp_path: Path, ner: str, treebank: str = TREEBANK) -> subprocess.CompletedProcess:
    (tmp_path / "ner.iob2").write_text(ner)
    (tmp_path / "treebank.conllu").write_text(treebank)
    args = ["--ner_file", tmp_path / "ner.iob2", "--conllu_file", tmp_path / "treebank.conllu"]
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args), "--out", str(tmp_path / "out.conllu")], capture_output=True, text=True
    )


def test_tags_go_into_misc_in_the_ner_files_order_and_nothing_else_changes(tmp_path):
    # b-1 is split into other words (# tag) but holds no entity; a-1's tags are BIOES, written as IOB2
    ner = iob2(("b-1", [("#", "O"), ("tag", "O"), ("sharing", "O")]),
               ("a-1", [("Ann", "S-PER"), ("ca", "O"), ("n't", "O"), ("go", "O"), (".", "O")]))  # fmt: skip
    result = merge(tmp_path, ner)
    assert result.returncode == 0, result.stderr
    assert "{'sentences': 2, 'other words, all O': 1}" in result.stdout
    assert (tmp_path / "out.conllu").read_text() == MERGED
    [b1, a1] = read_sentences(tmp_path / "out.conllu")
    assert a1.labels("ner") == ["B-PER", "O", "O", "O", "O"] and a1.labels("upos") == ["PROPN", "AUX", "PART", "VERB",
                                                                                     "PUNCT"]  # fmt: skip
    assert b1.labels("ner") == ["O", "O"] and b1.words == ["#tag", "sharing"]


@pytest.mark.parametrize(
    ("ner", "message"),
    [
        (iob2(("b-1", [("#", "B-ORG"), ("tag", "I-ORG"), ("sharing", "O")])),
         "ner.iob2:1: sentence 'b-1' has other words in .*treebank.conllu \\(#tag sharing\\), and entities"),
        (iob2(("b-1", [("#", "O"), ("tag", "O"), ("sharing", "O")]), ("c-9", [("Who", "O")])),
         "ner.iob2:6: .*treebank.conllu has no sentence 'c-9'"),
        ("1\tAnn\tB-PER\t-\t-\n\n", "ner.iob2:1: the sentence has no '# sent_id' comment"),
    ],
    ids=["other words with entities", "sentence not in the treebank", "no sent_id"],
)  # fmt: skip
def test_what_cannot_be_matched_stops_the_script_at_its_line(tmp_path, ner, message):
    result = merge(tmp_path, ner)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out.conllu").exists()


def test_a_malformed_treebank_line_stops_the_script_at_that_line(tmp_path):
    treebank = TREEBANK.replace("2\tsharing\tshare\tNOUN\tNN\t_\t0\troot\t_\t_", "2\tsharing\tshare\tNOUN")
    result = merge(tmp_path, iob2(("a-1", [("Ann", "O")])), treebank)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert re.search(r"treebank.conllu:17: expected 10 tab-separated columns, found 4", result.stderr), result.stderr


UNER_DEV = SHARED_DATA / "uner" / "en_ewt" / "en_ewt-ud-dev.iob2"
EWT_DEV = SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu"


@pytest.mark.skipif(not (UNER_DEV.is_file() and EWT_DEV.is_file()), reason="needs UNER and UD English-EWT dev")
def test_universal_ner_english_ewt_dev_goes_into_ud_english_ewt_dev(tmp_path):
    out = tmp_path / "dev.conllu"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--ner_file", UNER_DEV, "--conllu_file", EWT_DEV, "--out", out],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "{'sentences': 2001, 'other words, all O': 3}" in result.stdout
    merged, ner, ud = read_sentences(out), read_sentences(UNER_DEV), read_sentences(EWT_DEV)
    same = [(m, n) for m, n in zip(merged, ner, strict=True) if m.words == n.words]
    assert len(same) == 1998 and all(m.labels("ner") == n.labels("ner") for m, n in same)
    upos = {u.tokens.metadata["sent_id"]: u.labels("upos") for u in ud}  # (UNER has EWT's sentences in another order)
    assert [m.labels("upos") for m in merged] == [upos[n.tokens.metadata["sent_id"]] for n in ner]
