"""Zero-shot labelling: a text gets the label whose description it is closest to; long texts are embedded window
by window; eval scores it like a fine-tuned model."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import fails, nasty_train

from nasty_lightning.inference.zero_shot import ZeroShotClassifier

LABELS = {"pets": "the cat sat on the mat", "other": "every grammar studies internationalization"}


@pytest.fixture(scope="module")
def classifier(tiny_bert):
    return ZeroShotClassifier(str(tiny_bert), LABELS)


def test_a_text_that_is_a_description_gets_its_label(classifier):
    assert classifier.classify(list(LABELS.values())) == list(LABELS)
    assert classifier.classify("the cat sat on the mat") == "pets"


def test_a_long_text_is_embedded_from_all_its_windows_not_cut(classifier):
    ids = classifier.tokenizer(LABELS["other"], add_special_tokens=False)["input_ids"]
    classifier.max_length = len(ids) + 2  # one description fills a window exactly
    try:
        repeated = classifier.embed([" ".join([LABELS["other"]] * 5), LABELS["other"]])
        assert torch.allclose(repeated[0], repeated[1], atol=1e-5)
        # a text whose windows differ is their mean, not its first window
        mixed = classifier.embed([LABELS["other"] + " " + LABELS["pets"]])
        assert not torch.allclose(mixed[0], repeated[1], atol=1e-3)
    finally:
        classifier.max_length = 256


@pytest.mark.parametrize(
    ("labels", "message"),
    [(["pets"], "needs at least two labels"), (["a", "a"], "names a label twice"), ({"a": " ", "b": "x"}, "empty")],
)
def test_bad_label_lists_are_refused(tiny_bert, labels, message):
    from nasty_lightning.errors import UserError

    with pytest.raises(UserError, match=message):
        ZeroShotClassifier(str(tiny_bert), labels)


@pytest.mark.slow
def test_eval_scores_zero_shot_labels_of_a_tsv(tiny_bert, tmp_path, capsys):
    tsv = tmp_path / "dev.tsv"
    rows = [(LABELS["pets"], "pets"), (LABELS["other"], "other"), ("the cat sat on the mat", "other")]
    tsv.write_text("text\tlabel\n" + "".join(f"{t}\t{g}\n" for t, g in rows))
    out = tmp_path / "zero.json"
    args = ["--model_dir", tiny_bert, "--test_file", tsv, "--output_json", out]
    result = nasty_train("eval", *args, "--zero_shot_labels", json.dumps(LABELS))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["zero_shot"] and scores["correct"] == 2 and scores["total"] == 3
    assert "accuracy: 0.6667 (2 of 3 texts correct)" in result.stdout
    assert fails(["eval", *args, "--zero_shot_labels", '["pets", "other"]', "--label_column", "upos"], capsys) == (
        "nasty-train: error: --label_column upos is a word's column: zero-shot labelling labels texts"
    )


@pytest.mark.slow
def test_tag_writes_zero_shot_labels_into_a_tsv(tiny_bert, tmp_path):
    tsv = tmp_path / "texts.tsv"
    tsv.write_text("text\n" + "".join(f"{t}\n" for t in LABELS.values()))
    out = tmp_path / "labelled.tsv"
    args = ["--model_dir", tiny_bert, "--input", tsv, "--output", out, "--zero_shot_labels", json.dumps(LABELS)]
    result = nasty_train("tag", *args, "--label_column", "topic")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "text\ttopic\n" + "".join(f"{t}\t{label}\n" for label, t in LABELS.items())
