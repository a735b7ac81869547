"""Entity spans from IOB2 tags and their exact-span scores, as ``eval`` reports them for NER files."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import SHARED_DATA

from nasty_lightning.commands.cli import main
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.inference import tagger as inference
from nasty_lightning.labels.entities import entity_scores, is_iob2, spans
from nasty_lightning.labels.heads import IGNORE, Head, LabelSchema, LabelVocab

UNER = SHARED_DATA / "uner" / "en_ewt" / "en_ewt-ud-dev.iob2"


def test_spans_follow_strict_iob2():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC", "B-LOC", "B-LOC", "I-LOC"]
    # I-LOC after O, and I-LOC after an ORG, start nothing; B-LOC B-LOC are two entities
    assert spans(tags) == [("PER", 0, 2), ("ORG", 4, 5), ("LOC", 6, 7), ("LOC", 7, 9)]
    assert spans(["O", "O"]) == [] and spans([]) == []


def test_scores_count_exact_spans_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["I-ORG", "O"]]  # PER cut short; ORG without its B-
    scores = entity_scores(gold, pred)
    assert (scores["gold"], scores["predicted"], scores["found"]) == (3, 2, 1)
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    assert scores["per_type"]["LOC"]["f1"] == 1.0 and scores["per_type"]["ORG"]["recall"] == 0.0
    assert scores["per_type"]["PER"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "gold": 1,
        "predicted": 1,
        "found": 0,
    }


def test_iob2_is_recognised():
    assert is_iob2(["O", "B-PER", "I-PER"]) and not is_iob2(["O"]) and not is_iob2(["NOUN", "B-PER"])


TRICKY = [  # (gold, predicted) sentences
    (["B-LOC", "B-LOC", "I-LOC"], ["B-LOC", "I-LOC", "I-LOC"]),  # adjacent entities of one type, merged
    (["O", "B-PER", "I-PER"], ["O", "I-PER", "I-PER"]),  # I- without B-, an entity at the sentence end
    (["B-ORG"], ["B-ORG"]),  # one-word sentences
    (["B-PER"], ["I-PER"]),
    (["O"], ["B-LOC"]),
    (["B-ORG", "I-ORG", "O", "B-PER"], ["B-ORG", "I-PER", "O", "B-PER"]),  # the type changes inside
    (["B-LOC", "I-LOC", "B-LOC"], ["B-LOC", "I-LOC", "I-LOC"]),
]


def test_span_scores_and_the_training_metric_equal_seqeval_strict_on_tricky_sequences():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    from nasty_lightning.training.scores import EntityF1

    gold, pred = [g for g, _ in TRICKY], [p for _, p in TRICKY]
    theirs = seqeval.classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True)
    ours = entity_scores(gold, pred)
    assert ours["f1"] == pytest.approx(theirs["micro avg"]["f1-score"], abs=1e-12)
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    width = max(map(len, gold)) + 1  # padded rows, as batches have them
    ids = [[[labels.index(t) for t in s] + [IGNORE] * (width - len(s)) for s in x] for x in (pred, gold)]
    for kind, expected in ((None, theirs["micro avg"]), *((k, theirs[k]) for k in ("LOC", "ORG", "PER"))):
        metric = EntityF1(labels, kind)
        for row in range(len(gold)):  # one sentence per update: the sums must not depend on batching
            metric.update(torch.tensor(ids[0][row : row + 1]), torch.tensor(ids[1][row : row + 1]))
        assert float(metric.compute()) == pytest.approx(expected["f1-score"], abs=1e-6), kind
        if kind is not None:
            assert ours["per_type"][kind]["f1"] == pytest.approx(expected["f1-score"], abs=1e-12)


@pytest.mark.skipif(not UNER.is_file(), reason="Universal NER English-EWT is not in the data folder")
def test_scores_equal_seqeval_strict_on_universal_ner():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    gold = [s.labels("ner") for s in read_sentences(UNER)]
    rng = random.Random(0)
    tags = sorted({t for s in gold for t in s})
    # predictions with every kind of error: wrong types, lost B-, stray I-, split and merged entities
    pred = [[rng.choice(tags) if rng.random() < 0.15 else t for t in s] for s in gold]
    ours = entity_scores(gold, pred)
    theirs = seqeval.classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True)
    assert ours["gold"] == theirs["micro avg"]["support"] == sum(len(spans(s)) for s in gold)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(theirs["micro avg"][f"{key}-score" if key == "f1" else key], abs=1e-12)
        for kind in ("LOC", "ORG", "PER"):
            expected = theirs[kind][f"{key}-score" if key == "f1" else key]
            assert ours["per_type"][kind][key] == pytest.approx(expected, abs=1e-12)


def test_eval_reports_entity_scores_for_iob2_files(tmp_path, monkeypatch, capsys):
    data = tmp_path / "ner.iob2"
    data.write_text("1\tAnn\tB-PER\t-\t-\n2\tSmith\tI-PER\t-\t-\n3\tsaw\tO\t-\t-\n4\tRome\tB-LOC\t-\t-\n\n")
    gold = {"Ann": "B-PER", "Smith": "I-PER", "saw": "O", "Rome": "O"}  # the model misses Rome

    class Model:
        label_column = "ner"
        columns = ["ner"]
        heads = LabelSchema((Head("ner", LabelVocab.of(gold.values())),))

        def predict(self, sentences, progress=False):
            return {"ner": [[gold[w] for w in words] for words in sentences]}

    monkeypatch.setattr(inference.Tagger, "load", classmethod(lambda cls, model_dir, **options: Model()))
    out_json = tmp_path / "scores.json"
    main(["eval", "--model_dir", str(tmp_path), "--test_file", str(data), "--output_json", str(out_json)])
    printed = capsys.readouterr().out
    assert "accuracy: 0.7500 (3 of 4 words correct)" in printed
    assert "entities: precision 1.0000, recall 0.5000, f1 0.6667 (1 of 2 gold entities found, 1 predicted)" in printed
    scores = json.loads(out_json.read_text())
    assert scores["accuracy"] == 0.75 and scores["f1"] == pytest.approx(2 / 3)
    assert scores["per_type"]["LOC"]["recall"] == 0.0 and scores["per_type"]["PER"]["f1"] == 1.0
