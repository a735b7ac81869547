"""Learned transition scores of IOB2 heads (--model.crf): the likelihood and the decoding are those of the
sequences enumerated one by one, and the scores travel with the model to every way of tagging."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
import torch
from clirun import fit_args, metrics, nasty_train
from toy_data import FILLER, toy_ner, write_iob2

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import META_FILE, read_meta
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.labels.heads import IGNORE
from nasty_lightning.modelling.crf import TRANSITIONS_RATE_FACTOR, Transitions
from nasty_lightning.modelling.decoding import allowed_transitions, viterbi
from nasty_lightning.training.module import TokenTagger


def _random_transitions(n: int, seed: int) -> Transitions:
    torch.manual_seed(seed)
    transitions = Transitions(n)
    with torch.no_grad():
        transitions.start.normal_()
        transitions.follow.normal_()
    return transitions.requires_grad_(False)


def _score(transitions: Transitions, scores: torch.Tensor, tags: tuple[int, ...]) -> torch.Tensor:
    total = transitions.start[tags[0]] + sum(scores[i, t] for i, t in enumerate(tags))
    return total + sum(transitions.follow[a, b] for a, b in itertools.pairwise(tags))


def test_the_likelihood_is_that_of_every_sequence_enumerated():
    n = 3
    transitions = _random_transitions(n, seed=0)
    sentences = [(torch.randn(3, n), (2, 0, 1)), (torch.randn(2, n), (1, 1)), (torch.randn(1, n), (0,))]
    expected = sum(
        torch.logsumexp(torch.stack([_score(transitions, s, t) for t in itertools.product(range(n), repeat=len(g))]), 0)
        - _score(transitions, s, g)
        for s, g in sentences
    )
    # padded rows: one sentence a row, words on every other position (subwords between them are not labelled)
    logits, targets = torch.randn(3, 7, n), torch.full((3, 7), IGNORE)
    for r, (s, g) in enumerate(sentences):
        logits[r, 1 : 2 * len(g) : 2], targets[r, 1 : 2 * len(g) : 2] = s, torch.tensor(g)
    assert torch.allclose(transitions.nll(logits, targets, None), expected, atol=1e-5)
    # packed: the three sentences in one row, told apart by their segments only
    logits, targets, segments = torch.randn(1, 8, n), torch.full((1, 8), IGNORE), torch.full((1, 8), -1)
    start = 0
    for k, (s, g) in enumerate(sentences):
        logits[0, start : start + len(g)], targets[0, start : start + len(g)] = s, torch.tensor(g)
        segments[0, start : start + len(g)] = k
        start += len(g)
    assert torch.allclose(transitions.nll(logits, targets, segments), expected, atol=1e-5)
    assert transitions.nll(logits, torch.full((1, 8), IGNORE), segments) == 0


def test_decoding_finds_the_best_allowed_sequence_under_the_learned_scores():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    follows, starts = allowed_transitions(labels)
    transitions = _random_transitions(len(labels), seed=1)
    for trial in range(5):
        scores = torch.randn(4, len(labels))
        allowed = [
            t
            for t in itertools.product(range(len(labels)), repeat=4)
            if starts[t[0]] and all(follows[a, b] for a, b in itertools.pairwise(t))
        ]
        best = max(allowed, key=lambda t: float(_score(transitions, scores, t)))
        assert tuple(viterbi(scores, follows, starts, transitions)) == best, trial


def test_crf_is_refused_without_a_column_of_iob2_tags(tiny_bert):
    with pytest.raises(UserError, match=r"--model.crf needs a column of IOB2 tags \(B-X, I-X, O\); upos has none"):
        TokenTagger(str(tiny_bert), labels={"upos": ["NOUN", "VERB"]}, crf=True)


def test_the_transitions_learn_faster_than_the_heads_without_weight_decay(tiny_bert):
    module = TokenTagger(str(tiny_bert), labels={"ner": ["O", "B-PER", "I-PER"]}, crf=True, weight_decay=0.1)
    module._trainer = SimpleNamespace(estimated_stepping_batches=3000, precision_plugin=SimpleNamespace())
    groups = module.configure_optimizers()["optimizer"].param_groups
    [group] = [g for g in groups if any(p is module.transitions["0"].follow for p in g["params"])]
    assert {id(p) for p in group["params"]} == {id(p) for p in module.transitions.parameters()}
    assert group["initial_lr"] == TRANSITIONS_RATE_FACTOR * module.head_learning_rate and group["weight_decay"] == 0


def test_a_model_dir_with_bad_transitions_is_refused(tmp_path):
    meta = {"label_column": "ner", "max_length": 64, "transitions": {"ner": {"start": [0.0, 1.0], "follow": [[0.0]]}}}
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="'transitions' must give a column a list of start scores and a square table"):
        read_meta(tmp_path)


@pytest.mark.slow
@pytest.mark.integration
def test_the_transitions_learn_and_travel_with_the_model(tiny_bert, tmp_path):
    data = {
        "train": write_iob2(tmp_path / "train.iob2", toy_ner(80, seed=0)),
        "dev": write_iob2(tmp_path / "dev.iob2", toy_ner(20, seed=1)),
    }
    run = tmp_path / "run"
    args = fit_args(tiny_bert, data, run, "--data.label_column", "ner", "--model.crf", "true")
    result = nasty_train(
        *args,
        *("--model.learning_rate", "3e-3", "--trainer.max_epochs", "8", "--early_stopping.patience", "100"),
        *("--model.validation_precision", "float32"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = max(float(r["val_f1"]) for r in metrics(run) if r.get("val_f1"))
    assert best > 0.5
    model_dir = run / "model"
    meta = read_meta(model_dir)
    labels = json.loads((model_dir / "config.json").read_text())["id2label"]
    learned = meta["transitions"]["ner"]
    assert len(learned["start"]) == len(learned["follow"]) == len(labels)
    assert any(abs(x) > 1e-3 for row in learned["follow"] for x in row)  # learned, not the zeros it starts at
    assert "only `Tagger` applies" in (model_dir / "README.md").read_text()

    # eval of the model directory (Tagger, with the transitions) scores what validation scored
    out = tmp_path / "eval.json"
    result = nasty_train("eval", "--model_dir", model_dir, "--test_file", data["dev"], "--output_json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["f1"] == pytest.approx(best, abs=1e-6)

    # the quantized copy keeps them
    int8 = tmp_path / "int8"
    result = nasty_train(
        "quantize", "--model_dir", model_dir, "--calibration_file", data["train"], "--output_dir", int8
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_meta(int8)["transitions"] == meta["transitions"]

    # Tagger decodes with them: scores that forbid O first and O after O leave no such O
    sentences = [FILLER[:4], FILLER[2:5]]

    def o_pairs(tagged: list[list[str]]) -> int:
        return sum(tags[0] == "O" for tags in tagged) + sum(
            a == b == "O" for tags in tagged for a, b in itertools.pairwise(tags)
        )

    assert o_pairs(Tagger.load(model_dir).predict(sentences)["ner"]) > 0
    o = int(next(i for i, label in labels.items() if label == "O"))
    learned["start"][o] = learned["follow"][o][o] = -1e4
    (model_dir / META_FILE).write_text(json.dumps(meta))
    assert o_pairs(Tagger.load(model_dir).predict(sentences)["ner"]) == 0

    # they must fit the head's labels
    learned["start"] = learned["start"][:-1]
    learned["follow"] = [row[:-1] for row in learned["follow"][:-1]]
    (model_dir / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="'transitions' of 'ner' fit no head of IOB2 tags of the model"):
        Tagger.load(model_dir)
