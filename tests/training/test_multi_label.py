"""Multi-label text classification (``--data.multi_label``): label sets as bit masks, thresholds chosen on the
validation file, set scores; a tiny model learns toy topics, and the export is a plain multi-label classifier."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import fit_args, metrics, nasty_train
from toy_data import toy_sentences

from nasty_lightning.errors import UserError
from nasty_lightning.formats.texts import read_texts
from nasty_lightning.inference.serving import TaggingAPI
from nasty_lightning.inference.serving_http import TagRequest
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.labels.heads import IGNORE, MAX_MULTI_LABELS, Head, LabelSchema, LabelVocab
from nasty_lightning.labels.scoring import score_sets
from nasty_lightning.training.scores import ThresholdCounts, bit_masks, label_bits

TOPICS = (("mail", {"postman"}), ("motion", {"ran", "barked"}), ("pets", {"cat", "dog"}))


def topics(sentence: list[tuple[str, str]]) -> str:
    """A toy sentence's topics: each whose words it holds, ``other`` where none."""
    words = {w for w, _ in sentence}
    return "|".join(name for name, names in TOPICS if words & names) or "other"


def write_topics(path, sentences):
    rows = ["text\tlabel"] + [" ".join(w for w, _ in s) + "\t" + topics(s) for s in sentences]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_label_set_is_a_bit_mask_and_labels_training_never_saw_are_left_out():
    head = Head("label", LabelVocab(("a", "b", "c")), multi_label=True)
    assert head.parts("c|a") == ["c", "a"] and head.parts(None) == []
    assert head.encode("c|a") == 0b101 and head.encode("b") == 0b010 and head.encode("a|new") == 0b001
    assert head.encode("new") == IGNORE and head.encode(None) == IGNORE
    assert head.label_set(0b101) == "a|c" and head.label_set(0) == ""
    masks = torch.tensor([0b101, 0b010])
    assert label_bits(masks, 3).tolist() == [[1, 0, 1], [0, 1, 0]]
    assert bit_masks(label_bits(masks, 3)).tolist() == masks.tolist()
    single = Head("label", LabelVocab(("a|b", "c")))  # without multi_label, a|b is one label
    assert single.parts("a|b") == ["a|b"] and single.encode("a|b") == 0


def test_the_schema_learns_each_label_of_the_sets_and_travels_with_its_flag(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("text\tlabel\nA cat .\tpets|motion\nA dog .\tpets\nThe mail .\tmail\n", encoding="utf-8")
    sentences = read_texts(path)
    schema = LabelSchema.learn(["label"], sentences, multi_label=True)
    assert schema.to_dict() == {"label": ["mail", "motion", "pets"]} and schema.multi_label
    assert schema.label_ids(str(path), sentences)[0][0][0] == (0b110,)
    assert LabelSchema.learn(["label"], sentences).to_dict() == {"label": ["mail", "pets", "pets|motion"]}
    state = {"labels": ["mail", "motion", "pets"], "label_column": "label", "multi_label": True}
    assert LabelSchema.from_checkpoint(state) == schema
    assert schema.meta_heads() == {"multi_label": True}
    assert not LabelSchema.from_dict({"upos": ["NOUN"]}, multi_label=True).multi_label  # a word's column never is
    many = Head("label", LabelVocab(tuple(f"l{i:02d}" for i in range(MAX_MULTI_LABELS + 1))), multi_label=True)
    with pytest.raises(UserError, match=f"has {MAX_MULTI_LABELS + 1} labels; at most {MAX_MULTI_LABELS}"):
        many.check("train.tsv")


def test_each_label_gets_the_threshold_of_its_best_f1():
    counts = ThresholdCounts(3)
    probs = torch.tensor([[0.9, 0.30, 0.2], [0.8, 0.25, 0.1], [0.1, 0.05, 0.3], [0.2, 0.12, 0.4]])
    gold = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    counts.update(probs, gold)
    # label 0: any threshold in (0.2, 0.8] separates it, the one nearest 0.5 is taken; label 1: (0.12, 0.25];
    # label 2 is never gold: no F1 above 0, so 0.5
    assert [round(t, 2) for t in counts.compute().tolist()] == [0.5, 0.25, 0.5]


def test_set_scores_by_hand():
    gold = [["a", "b"], ["a"], ["c"]]
    predicted = [["a", "b"], ["a", "c"], []]
    result = score_sets(gold, predicted)
    assert result["exact_match"] == result["accuracy"] == pytest.approx(1 / 3) and result["correct"] == 1
    # true positives a, b, a; predicted a, b, a, c; gold a, b, a, c: micro P 3/4, R 3/4
    assert result["micro_f1"] == pytest.approx(0.75)
    assert result["per_tag"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)


@pytest.fixture(scope="module")
def topics_run(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("topics")
    data = {
        "train": write_topics(root / "train.tsv", toy_sentences(160, seed=0)),
        "dev": write_topics(root / "dev.tsv", toy_sentences(60, seed=1)),
    }
    args = fit_args(tiny_bert, data, root, "--data.label_column", "label", "--data.multi_label", "true")
    args += ["--model.learning_rate", "2e-3", "--model.pooling", "mean", "--trainer.max_epochs", "10"]
    result = nasty_train(*args, "--monitor", "micro_f1", "--early_stopping.patience", "100")
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "fit.out").write_text(result.stdout)
    return root, data


@pytest.mark.integration
@pytest.mark.slow
def test_a_tiny_model_learns_label_sets_and_eval_scores_them_at_the_chosen_thresholds(topics_run, tmp_path):
    root, data = topics_run
    rows = [r for r in metrics(root) if r.get("val_micro_f1")]
    assert float(rows[-1]["val_micro_f1"]) > max(0.85, float(rows[0]["val_micro_f1"]))
    assert "validation_micro_f1: " in (root / "fit.out").read_text()
    meta = json.loads((root / "model" / "nasty_lightning.json").read_text())
    assert meta["multi_label"] is True and len(meta["thresholds"]["label"]) == 4  # mail, motion, other, pets
    assert all(0 < t < 1 for t in meta["thresholds"]["label"])
    args = ["eval", "--model_dir", root / "model", "--test_file", data["dev"], "--output_json", tmp_path / "e.json"]
    result = nasty_train(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["exact_match"] > 0.75 and scores["micro_f1"] > 0.88 and set(scores["per_tag"]) == {
        "mail", "motion", "other", "pets"
    }  # fmt: skip
    assert "exact match: " in result.stdout and "micro-F1: " in result.stdout
    tagged = tmp_path / "tagged.tsv"
    result = nasty_train("tag", "--model_dir", root / "model", "--input", data["dev"], "--output", tagged)
    assert result.returncode == 0, result.stderr[-2000:]
    written = [line.split("\t")[1] for line in tagged.read_text().splitlines()[1:]]
    gold = [topics(s) for s in toy_sentences(60, seed=1)]
    assert sum(w == g for w, g in zip(written, gold, strict=True)) >= 45 and any("|" in w for w in written)
    api = TaggingAPI(str(root / "model"), batch_size=64, threads=1, max_batch_size=8)
    api.setup("cpu")
    first = " ".join(w for w, _ in toy_sentences(60, seed=1)[0])
    answer = json.loads(
        api.encode_response(api.predict(api.decode_request(TagRequest.model_validate({"text": first})))).body
    )
    assert answer["label"] == written[0].split("|")  # a list of labels


@pytest.mark.integration
def test_the_export_is_a_plain_multi_label_classifier(tiny_bert, topics_run, tmp_path):
    from transformers import AutoConfig, pipeline

    _, data = topics_run
    args = fit_args(tiny_bert, data, tmp_path, "--data.label_column", "label", "--data.multi_label", "true")
    result = nasty_train(*args, "--trainer.max_epochs", "1")  # first pooling: plain transformers' own classifier
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = tmp_path / "model"
    assert AutoConfig.from_pretrained(model_dir).problem_type == "multi_label_classification"
    texts = [" ".join(w for w, _ in s) for s in toy_sentences(8, seed=7)]
    classifier = pipeline("text-classification", model=str(model_dir), device="cpu", top_k=None)
    tagger = Tagger.load(model_dir)
    thresholds = dict(zip(tagger.labels, tagger.meta["thresholds"]["label"], strict=True))
    plain = [sorted(r["label"] for r in out if r["score"] >= thresholds[r["label"]]) for out in classifier(texts)]
    assert ["|".join(labels) for labels in plain] == [labels[0] for labels in tagger.classify(texts)]


def test_multi_label_needs_a_column_that_labels_texts(tiny_bert, tmp_path):
    from nasty_lightning.data.datamodule import TaggingDataModule

    with pytest.raises(UserError, match="--data.multi_label: no column of upos labels texts"):
        TaggingDataModule(train_file=str(tmp_path / "x.conllu"), label_column="upos", multi_label=True)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"thresholds": {"label": [0.5, 1.5]}}, "'thresholds' must give columns lists of numbers between 0 and 1"),
        ({"thresholds": [0.5]}, "'thresholds' must give columns lists of numbers between 0 and 1"),
        ({"thresholds": {"label": [True]}}, "'thresholds' must give columns lists of numbers between 0 and 1"),
        ({"multi_label": "yes"}, "'multi_label' must be true or false"),
    ],
)
def test_a_model_directory_with_bad_thresholds_is_refused(tmp_path, entry, message):
    from nasty_lightning.formats.model_dir import META_FILE, read_meta

    (tmp_path / META_FILE).write_text(json.dumps({"label_column": "label", "max_length": 128, **entry}))
    with pytest.raises(UserError, match=message):
        read_meta(tmp_path)
