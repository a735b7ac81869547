"""The scripts that build sentence-classification data: EWT's genres (sentence and document level) and per-label
samples for learning curves."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from nasty_lightning.formats.texts import read_texts

SCRIPTS = Path(__file__).parents[2] / "scripts"
EWT_DEV = SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu"


def run(script: str, *args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, SCRIPTS / script, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.skipif(not EWT_DEV.is_file(), reason="needs UD English-EWT dev")
def test_ewt_genre_writes_every_sentence_and_document_with_its_genre(tmp_path):
    run("ewt_genre.py", "--conllu_file", EWT_DEV, "--out", tmp_path)
    sentences = read_texts(tmp_path / "en_ewt-ud-dev-genre.tsv")
    documents = read_texts(tmp_path / "en_ewt-ud-dev-genre-docs.tsv")
    assert len(sentences) == 2001 and len(documents) == 318
    genres = {s.sentence_label("label") for s in sentences}
    assert genres == {"answers", "email", "newsgroup", "reviews", "weblog"}
    conllu = (tmp_path / "en_ewt-ud-dev-genre.conllu").read_text()
    # the CoNLL-U copy is the input plus one '# genre' comment a sentence, each the prefix of its sent_id
    lines = conllu.splitlines(keepends=True)
    assert "".join(line for line in lines if not line.startswith("# genre = ")) == EWT_DEV.read_text()
    ids = [line.split(" = ")[1].split("-")[0] for line in lines if line.startswith("# sent_id = ")]
    assert ids == [line.split(" = ")[1].strip() for line in lines if line.startswith("# genre = ")]


def test_a_sample_has_as_many_rows_of_every_label_and_a_smaller_one_is_part_of_it(tmp_path):
    tsv = tmp_path / "all.tsv"
    with tsv.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["text", "label"])
        writer.writerows([f"text {i}", "ab"[i % 3 == 0]] for i in range(60))
    run("sample_texts.py", "--tsv_file", tsv, "--per_class", 5, "--seed", 1, "--out", tmp_path)
    run("sample_texts.py", "--tsv_file", tsv, "--per_class", 10, "--seed", 1, "--out", tmp_path)
    small, large = read_texts(tmp_path / "all-5x1.tsv"), read_texts(tmp_path / "all-10x1.tsv")
    labels = [s.sentence_label("label") for s in small]
    assert sorted(labels) == ["a"] * 5 + ["b"] * 5
    assert {s.tokens.metadata["text"] for s in small} <= {s.tokens.metadata["text"] for s in large}
    args = ["--tsv_file", tsv, "--per_class", "30", "--seed", "1", "--out", tmp_path]
    result = subprocess.run([sys.executable, SCRIPTS / "sample_texts.py", *args], capture_output=True, text=True)
    assert result.returncode != 0 and "the label 'b' has 20 rows, fewer than 30" in result.stderr
