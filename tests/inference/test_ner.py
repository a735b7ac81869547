"""NER end to end on a toy IOB2 set: entity F1 while training, valid spans, entities of raw text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import fit_args, metrics, nasty_train
from toy_data import toy_ner, write_iob2

from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.labels.entities import spans


@pytest.fixture(scope="module")
def ner_run(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    data = {
        "train": write_iob2(root / "train.iob2", toy_ner(80, seed=0)),
        "dev": write_iob2(root / "dev.iob2", toy_ner(20, seed=1)),
    }
    args = fit_args(tiny_bert, data, root / "run", "--data.label_column", "ner")
    result = nasty_train(
        *args, "--model.learning_rate", "3e-3", "--trainer.max_epochs", "8", "--early_stopping.patience", "100"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", data, result


@pytest.mark.slow
@pytest.mark.integration
def test_a_small_fine_tune_learns_entities(ner_run):
    run, _, result = ner_run
    rows = [r for r in metrics(run) if r.get("val_f1")]
    assert float(rows[-1]["val_f1"]) > 0.5 and float(rows[-1]["val_f1"]) > float(rows[0]["val_f1"])
    [epoch_line] = [line for line in result.stdout.splitlines() if line.startswith("Epoch 8 completed.")]
    assert ", validation_f1: " in epoch_line and "(LOC " in epoch_line and ", PER " in epoch_line
    card = (run / "model" / "README.md").read_text()
    assert "best checkpoint chosen by | val_f1 = " in card  # best.ckpt follows entity F1 by default


@pytest.mark.slow
@pytest.mark.integration
def test_eval_and_tag_give_valid_spans(ner_run, tmp_path):
    run, data, _ = ner_run
    out = tmp_path / "tagged.iob2"
    assert nasty_train("tag", "--model_dir", run / "model", "--input", data["dev"], "--output", out).returncode == 0
    for line_in, line_out in zip(data["dev"].read_text().split("\n"), out.read_text().split("\n"), strict=True):
        a, b = line_in.split("\t"), line_out.split("\t")
        assert a[:2] + a[3:] == b[:2] + b[3:]  # only the tag column changes
    for block in out.read_text().strip().split("\n\n"):
        tags = [line.split("\t")[2] for line in block.split("\n")]
        assert all(not t.startswith("I-") or p[2:] == t[2:] for p, t in zip(["O", *tags], tags, strict=False)), tags
    for constrained in ("true", "false"):
        result = nasty_train(
            "eval",
            "--model_dir",
            run / "model",
            "--test_file",
            data["dev"],
            "--constrained",
            constrained,
            "--output_json",
            tmp_path / f"{constrained}.json",
        )
        assert result.returncode == 0, result.stderr
    viterbi, argmax = (json.loads((tmp_path / f"{c}.json").read_text()) for c in ("true", "false"))
    assert viterbi["f1"] > 0.5 and viterbi["f1"] >= argmax["f1"] - 0.05


@pytest.mark.slow
@pytest.mark.integration
def test_entities_of_raw_text_have_character_offsets(ner_run):
    tagger = Tagger.load(ner_run[0] / "model")
    text = "Ann saw  Bob Smith in New York."
    found = tagger.entities(text)
    assert all(text[start:end] == surface for surface, _, start, end in found)
    words = [w for w, _ in toy_ner(1, seed=5)[0]]
    [tags] = tagger.predict([words])["ner"]
    assert len(spans(tags)) == len(tagger.entities(" ".join(words)))


def write_conllu_misc_ner(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """The sentences as CoNLL-U, each tag in MISC (``NER=``), after a SpaceAfter=No on every word before a '.'."""
    lines = []
    for n, sentence in enumerate(sentences):
        lines.append(f"# sent_id = {n}")
        for i, (word, tag) in enumerate(sentence, start=1):
            misc = ("SpaceAfter=No|" if i < len(sentence) and sentence[i][0] == "." else "") + f"NER={tag}"
            lines.append(f"{i}\t{word}\t_\tX\t_\t_\t_\t_\t_\t{misc}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.integration
def test_conllu_with_entities_in_misc_is_scored_and_tagged_in_misc(ner_run, tmp_path):
    run, data, _ = ner_run
    gold = write_conllu_misc_ner(tmp_path / "dev.conllu", toy_ner(20, seed=1))  # the IOB2 dev set's sentences
    scores = {}
    for name, path in (("iob2", data["dev"]), ("conllu", gold)):
        args = ("--model_dir", run / "model", "--test_file", path, "--output_json", tmp_path / f"{name}.json")
        assert nasty_train("eval", *args).returncode == 0
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert scores["conllu"]["f1"] == scores["iob2"]["f1"] and scores["conllu"]["per_type"] == scores["iob2"]["per_type"]

    out = tmp_path / "tagged.conllu"
    assert nasty_train("tag", "--model_dir", run / "model", "--input", gold, "--output", out).returncode == 0
    iob2 = tmp_path / "tagged.iob2"
    assert nasty_train("tag", "--model_dir", run / "model", "--input", data["dev"], "--output", iob2).returncode == 0
    predicted = [line.split("\t")[2] for line in iob2.read_text().splitlines() if line]

    def words(path: Path) -> list[list[str]]:
        return [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]

    for columns, original, tag in zip(words(out), words(gold), predicted, strict=True):
        assert columns[:9] == original[:9]  # only MISC changes, and in MISC only the NER= item
        assert columns[9] == original[9].rsplit("NER=", 1)[0] + f"NER={tag}"
