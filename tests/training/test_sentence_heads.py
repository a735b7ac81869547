"""Heads that label whole sentences: a CoNLL-U comment's label alone, or beside UPOS from one encoder pass, learned
by a tiny model; the export is a plain sequence classifier; long texts are split into windows, never cut."""

from __future__ import annotations

import json

import pytest
from clirun import fails, fit_args, metrics, nasty_train
from toy_data import genre, toy_sentences, write_conllu

from nasty_lightning.inference.tagger import Tagger

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def genres(tmp_path_factory):
    root = tmp_path_factory.mktemp("genres")
    return {
        "train": write_conllu(root / "train.conllu", toy_sentences(96, seed=0), genres=True),
        "dev": write_conllu(root / "dev.conllu", toy_sentences(40, seed=1), genres=True),
    }


def fit_genre(tiny_bert, data, root, *extra):
    args = fit_args(tiny_bert, data, root, "--model.learning_rate", "2e-3", "--trainer.max_epochs", "10", *extra)
    result = nasty_train(*args, "--early_stopping.patience", "100")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def genre_run(tiny_bert, genres, tmp_path_factory):
    root = tmp_path_factory.mktemp("genre_run")
    result = fit_genre(tiny_bert, genres, root, "--data.label_column", "genre", "--monitor", "macro_f1")
    (root / "fit.out").write_text(result.stdout)
    return root


@pytest.mark.slow
def test_a_sentence_label_is_learned_and_the_export_is_a_plain_sequence_classifier(genre_run, genres):
    rows = [r for r in metrics(genre_run) if r.get("val_acc")]
    assert float(rows[-1]["val_acc"]) >= 0.9 and float(rows[-1]["val_macro_f1"]) >= 0.9
    assert float(rows[0]["val_acc"]) < float(rows[-1]["val_acc"])
    [line] = [
        line for line in (genre_run / "fit.out").read_text().splitlines() if line.startswith("Epoch 10 completed")
    ]
    assert ", validation_accuracy: " in line and ", validation_macro_f1: " in line
    from transformers import pipeline

    model_dir = genre_run / "model"
    meta = json.loads((model_dir / "nasty_lightning.json").read_text())
    card = (model_dir / "README.md").read_text()
    assert "| best checkpoint chosen by | val_macro_f1 = " in card and 'pipeline("text-classification"' in card
    assert meta["task"] == "text-classification" and meta["label_column"] == "genre"
    texts = [" ".join(w for w, _ in s) for s in toy_sentences(12, seed=7)]
    plain = [r["label"] for r in pipeline("text-classification", model=str(model_dir), device="cpu")(texts)]
    ours = [s[0] for s in Tagger.load(model_dir).classify(texts)]
    assert plain == ours
    assert sum(p == genre(s) for p, s in zip(plain, toy_sentences(12, seed=7), strict=True)) >= 11


@pytest.mark.slow
def test_word_and_sentence_heads_learn_together_from_one_file(tiny_bert, genres, tmp_path):
    args = ("--data.label_column", "[upos, genre]", "--monitor", "genre", "--model.pooling", "mean")
    args += ("--trainer.max_epochs", "12")
    fit_genre(tiny_bert, genres, tmp_path, *args)
    last = [r for r in metrics(tmp_path) if r.get("val_acc")][-1]
    assert float(last["val_acc"]) > 0.9 and float(last["val_genre"]) > 0.85  # from about 0.5, the larger class
    dev = toy_sentences(40, seed=1)
    predicted = Tagger.load(tmp_path / "model").predict([[w for w, _ in s] for s in dev])
    assert [len(tags) for tags in predicted["upos"]] == [len(s) for s in dev]
    assert sum(p == [genre(s)] for p, s in zip(predicted["genre"], dev, strict=True)) / len(dev) > 0.85


@pytest.mark.slow
def test_a_text_longer_than_a_window_is_labelled_from_all_its_windows(genre_run):
    tagger = Tagger.load(genre_run / "model")
    sentence = toy_sentences(1, seed=11)[0]
    words = [w for w, _ in sentence] * 40  # far more subwords than one window holds
    tagger.max_length = 16
    [[label]] = tagger.predict([words])["genre"]
    assert label == genre(sentence)


def test_a_sentence_without_its_label_is_reported_at_its_line(tiny_bert, genres, tmp_path, capsys):
    lines = genres["train"].read_text().splitlines(keepends=True)
    second = [i for i, line in enumerate(lines) if line.startswith("# genre")][1]
    broken = tmp_path / "train.conllu"
    broken.write_text("".join(lines[:second] + lines[second + 1 :]))
    data = {"train": broken, "dev": genres["dev"]}
    line = fails(fit_args(tiny_bert, data, tmp_path / "run", "--data.label_column", "genre"), capsys)
    start = second  # the sentence starts at its '# sent_id' line, the one before the removed comment (1-based)
    assert line == (
        f"nasty-train: error: {broken}:{start}: the sentence has no 'genre' label (a '# genre = ...' comment in "
        "CoNLL-U, a 'genre' column or key in TSV, CSV or JSON Lines); --data.label_column names it"
    )


@pytest.mark.slow
def test_eval_and_tag_read_and_write_labels_in_conllu_comments_and_in_tsv(genre_run, genres, tmp_path):
    model = genre_run / "model"
    dev = [(" ".join(w for w, _ in s), genre(s)) for s in toy_sentences(40, seed=1)]
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("text\tgenre\n" + "".join(f"{t}\t{g}\n" for t, g in dev))
    scores = {}
    for name, path in (("conllu", genres["dev"]), ("tsv", tsv)):
        out = tmp_path / f"{name}.json"
        result = nasty_train("eval", "--model_dir", model, "--test_file", path, "--output_json", out)
        assert result.returncode == 0, result.stderr
        scores[name] = json.loads(out.read_text())
        assert "of 40 texts correct" in result.stdout and "macro-F1: " in result.stdout
    assert scores["conllu"]["accuracy"] == scores["tsv"]["accuracy"] >= 0.9
    assert scores["conllu"]["macro_f1"] == scores["tsv"]["macro_f1"] >= 0.9

    tagged = tmp_path / "tagged.conllu"
    assert nasty_train("tag", "--model_dir", model, "--input", genres["dev"], "--output", tagged).returncode == 0
    before, after = genres["dev"].read_text().splitlines(), tagged.read_text().splitlines()
    assert [line for line in before if not line.startswith("# genre")] == [
        line for line in after if not line.startswith("# genre")
    ]
    predicted = [line.removeprefix("# genre = ") for line in after if line.startswith("# genre = ")]
    assert len(predicted) == 40 and sum(p == g for p, (_, g) in zip(predicted, dev, strict=True)) >= 36

    unlabelled = tmp_path / "texts.tsv"
    unlabelled.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, (t, _) in enumerate(dev)))
    out = tmp_path / "labelled.tsv"
    assert nasty_train("tag", "--model_dir", model, "--input", unlabelled, "--output", out).returncode == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["id", "text", "genre"] and [r[2] for r in rows[1:]] == predicted


@pytest.mark.slow
def test_serve_answers_each_text_with_its_label_and_quantize_keeps_them(genre_run, genres, tmp_path):
    from nasty_lightning.inference.serving import TaggingAPI
    from nasty_lightning.inference.serving_http import TagRequest

    model = genre_run / "model"
    texts = [" ".join(w for w, _ in s) for s in toy_sentences(12, seed=7)]
    expected = [labels[0] for labels in Tagger.load(model).classify(texts)]
    api = TaggingAPI(str(model), batch_size=64, threads=1, max_batch_size=8)
    api.setup("cpu")
    job = api.decode_request(TagRequest.model_validate([{"text": t} for t in texts]))
    body = json.loads(api.encode_response(api.predict(job)).body)
    assert [answer["genre"] for answer in body] == expected
    assert [w["word"] for w in body[0]["words"]] == texts[0].split() and set(body[0]["words"][0]) == {
        "word", "start", "end"
    }  # fmt: skip
    out = tmp_path / "int8"
    args = ["quantize", "--model_dir", model, "--calibration_file", genres["dev"], "--output_dir", out]
    result = nasty_train(*args, "--max_accuracy_drop", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "genre" in result.stdout
    int8 = [labels[0] for labels in Tagger.load(out).classify(texts)]
    assert sum(a == b for a, b in zip(int8, expected, strict=True)) >= 11


@pytest.mark.slow
def test_mean_pooling_trains_on_packed_rows_and_tags_as_it_validated(tiny_bert, genres, tmp_path):
    args = ("--data.label_column", "genre", "--model.pooling", "mean", "--trainer.max_epochs", "12")
    result = fit_genre(tiny_bert, genres, tmp_path, *args)
    assert "packed rows" not in result.stderr  # no warning: the windows of a row are pooled apart
    best = max(float(r["val_acc"]) for r in metrics(tmp_path) if r.get("val_acc"))  # the exported model's
    dev = toy_sentences(40, seed=1)
    predicted = Tagger.load(tmp_path / "model").classify([[w for w, _ in s] for s in dev])
    right = sum(p == (genre(s),) for p, s in zip(predicted, dev, strict=True))
    # validation may compute in bf16-mixed, the tagger in float32: a sentence apart at most
    assert best > 0.7 and right / len(dev) == pytest.approx(best, abs=0.026)
