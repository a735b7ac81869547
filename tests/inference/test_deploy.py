"""From a checkpoint to a usable model: export, plain transformers, Tagger, eval, tag, model card."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clirun import metrics, nasty_train
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

import nasty_lightning.inference.export as export_module
from nasty_lightning import Tagger
from nasty_lightning.commands.cli import main
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.inference.export import callback_state, curve_points, model_card
from nasty_lightning.labels.heads import LabelSchema

TAGS = ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]
MAX_LENGTH = "32"
# File names a checkpoint's tokenizer files may not have: they would write outside the export, or over its
# own files (the heads, the casing embedding, the card's picture), or put a pickle or code beside them.
UNSAFE_NAMES = [
    "../x", "{tmp}/x", "sub/x", ".hidden", "config.json", "model.safetensors", "heads.safetensors",
    "casing.safetensors", "training_curves.png", "nasty_lightning.json", "pytorch_model.bin", "modeling_evil.py",
]  # fmt: skip

# Comments, a multiword token, an empty node, trailing spaces in the MISC column, and a sentence far
# longer than MAX_LENGTH subwords.
LONG = " ".join(["the big dog barked at the postman"] * 8)
EDGE_CASES = (
    "# newdoc id = d1\n# sent_id = e1\n# text = the cat sat .\n"
    "1\tthe\tthe\tX\t_\t_\t2\tdet\t_\t_\n"
    "2-3\tcatsat\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\tcat\tcat\tX\t_\t_\t0\troot\t_\t_\n"
    "3\tsat\tsit\tX\t_\t_\t2\tdep\t_\tSpaceAfter=No  \n"
    "3.1\tsat\tsit\t_\t_\t_\t_\t_\t2:dep\t_\n"
    "4\t.\t.\tX\t_\t_\t2\tpunct\t_\t_\n\n"
    "# sent_id = e2\n"
    + "".join(
        f"{i}\t{w}\t{w}\tX\t_\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_\n"
        for i, w in enumerate(LONG.split(), start=1)
    )
    + "\n"
)


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_roberta"])
def run(request, toy_treebank, tmp_path_factory):
    """A fitted toy tagger (with a test file, so the card has test metrics) and its exported model."""
    model = request.getfixturevalue(request.param)
    root = tmp_path_factory.mktemp("run")
    argv = sys.argv
    sys.argv = ["nasty-train"]
    try:
        main(
            [
                "fit",
                "--model.model_name",
                str(model),
                "--data.train_file",
                str(toy_treebank["train"]),
                "--data.val_file",
                str(toy_treebank["dev"]),
                "--data.test_file",
                str(toy_treebank["dev"]),
                "--model.learning_rate",
                "1e-3",
                "--data.batch_size",
                "8",
                "--trainer.max_epochs",
                "3",
                "--data.max_length",
                MAX_LENGTH,
                "--trainer.default_root_dir",
                str(root),
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
    finally:
        sys.argv = argv
    return root


@pytest.mark.slow
def test_export_is_a_plain_transformers_model(run):
    model_dir = run / "model"
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.glob("*.bin"))
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    assert [model.config.id2label[i] for i in range(len(TAGS))] == TAGS


@pytest.mark.slow
def test_pipeline_gives_our_tags_on_first_subwords(run):
    model_dir = run / "model"
    sentences = [s.split() for s in ["the big dog barked .", "a Zürich postman ran near the mat ."]]
    ours = Tagger.load(model_dir).predict(sentences)["upos"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf = pipeline("token-classification", model=str(model_dir), ignore_labels=[])
    for words, our_tags in zip(sentences, ours, strict=True):
        word_ids = tokenizer(words, is_split_into_words=True).word_ids()
        first = [i for i, w in enumerate(word_ids) if w is not None and w != (word_ids[i - 1] if i else None)]
        [entities] = hf([words], is_split_into_words=True)
        by_index = {e["index"]: e["entity"] for e in entities}
        assert [by_index[i] for i in first] == our_tags


@pytest.mark.slow
def test_export_command_matches_the_export_after_fit(run, tmp_path):
    result = nasty_train("export", "--ckpt_path", run / "checkpoints" / "best.ckpt", "--output_dir", tmp_path / "m")
    assert result.stdout == f"wrote {tmp_path / 'm'}\n"  # says where it wrote
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (run / "model" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["id2label"]["3"] == "NOUN"


@pytest.mark.slow
def test_model_card_names_the_real_numbers(run):
    card = (run / "model" / "README.md").read_text()
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    best = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint") and "'val_acc'" in k)
    assert f"| best checkpoint chosen by | val_acc = {float(best['best_model_score']):.4f} |" in card
    assert f"| upos | 6 tags | {float(best['best_model_score']):.4f} |" in card  # the heads table
    assert "train.conllu`: 64 sentences, " in card and "dev.conllu`: 17 sentences, " in card
    assert "| epochs run | 3;" in card and "| test_acc | " in card and "| training time | " in card
    assert "nasty-train fit --model.model_name" in card and "| learning rate | 0.001 " in card
    assert (run / "model" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    record = callback_state(ckpt, "RunRecord")
    assert record["precision"] in ("bf16-mixed", "32-true")
    assert f"| training precision | {record['precision']} |" in card and f"| hardware | {record['hardware']} |" in card


def test_a_checkpoint_without_a_recorded_precision_gets_no_precision_row(run):
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    schema = LabelSchema.from_checkpoint(ckpt["TaggingDataModule"])
    assert "| training precision | " in model_card(ckpt, schema, {}, has_curves=False)
    del callback_state(ckpt, "RunRecord")["precision"]  # as in checkpoints of earlier versions
    assert "precision |" not in model_card(ckpt, schema, {}, has_curves=False)


def test_curves_of_an_epoch_checkpoint_stop_at_its_step(run, tmp_path, monkeypatch):
    """The rows of metrics.csv after the checkpoint are the later epochs of the run: not its history."""
    epoch0 = run / "checkpoints" / "epoch=0.ckpt"
    step = torch.load(epoch0, weights_only=True)["global_step"]
    drawn = []

    def recorded(metrics_csv: Path, global_step: int):
        drawn.append(curve_points(metrics_csv, global_step))
        return drawn[-1]

    monkeypatch.setattr(export_module, "curve_points", recorded)
    main(["export", "--ckpt_path", str(epoch0), "--output_dir", str(tmp_path / "m")])
    [(train, val)] = drawn
    steps = [s for s, _ in train + val]
    assert val and max(steps) < step < max(int(row["step"]) for row in metrics(run))
    assert (tmp_path / "m" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert f"this checkpoint: epoch 1, step {step} |" in (tmp_path / "m" / "README.md").read_text()


def test_tagger_api(run):
    tagger = Tagger.load(run / "model")
    [tagged] = tagger.tag("the dog barked.")
    assert [w for w, _ in tagged] == ["the", "dog", "barked", "."] and all(t in TAGS for _, t in tagged)
    batch = [["the", "dog"], LONG.split(), ["a", "cat", "sat", "on", "the", "mat", "."]]
    assert tagger.tag(batch) == [tagger.tag([s])[0] for s in batch]  # order kept despite sorting by length
    assert len(tagger.tag([LONG.split()])[0]) == len(LONG.split())


def test_tag_changes_only_the_predicted_column(run, tmp_path):
    source = tmp_path / "in.conllu"
    source.write_bytes(b"\xef\xbb\xbf" + EDGE_CASES.replace("\n", "\r\n").encode("utf-8"))
    result = nasty_train("tag", "--model_dir", run / "model", "--input", source, "--output", tmp_path / "out.conllu")
    assert result.returncode == 0, result.stderr[-2000:]
    out = (tmp_path / "out.conllu").read_bytes()
    assert b"\r" not in out and not out.startswith(b"\xef\xbb\xbf")
    got, want = out.decode("utf-8").split("\n"), EDGE_CASES.split("\n")
    assert len(got) == len(want)
    sentences = read_sentences(source)
    words = sum(len(s.words) for s in sentences)
    assert re.search(rf"^tagged {len(sentences)} sentences \({words} words\) in \d+\.\d\d s", result.stderr, re.M)
    for g, w in zip(got, want, strict=True):
        g_cols, w_cols = g.split("\t"), w.split("\t")
        if re.fullmatch(r"\d+", w_cols[0]):
            assert g_cols[3] in TAGS and g_cols[:3] + g_cols[4:] == w_cols[:3] + w_cols[4:]
        else:
            assert g == w


@pytest.mark.slow
def test_eval_counts_every_word_and_agrees_with_the_ud_scorer(run, tmp_path, toy_treebank):
    gold = tmp_path / "gold.conllu"
    gold.write_text(EDGE_CASES.replace("\tX\t", "\tNOUN\t") + toy_treebank["dev"].read_text(), encoding="utf-8")
    n_words = sum(len(s.words) for s in read_sentences(gold))
    result = nasty_train(
        "eval",
        "--model_dir",
        run / "model",
        "--test_file",
        gold,
        "--output_json",
        tmp_path / "e.json",
        "--confusion_png",
        tmp_path / "c.png",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["total"] == n_words and f"of {n_words} words correct" in result.stdout
    assert sum(t["support"] for t in scores["per_tag"].values()) == n_words
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    nasty_train("tag", "--model_dir", run / "model", "--input", gold, "--output", tmp_path / "pred.conllu")
    udeval = Path(sys.executable).with_name("udeval")
    scored = subprocess.run([udeval, "-v", gold, tmp_path / "pred.conllu"], capture_output=True, text=True, check=True)
    upos = float(re.search(r"^UPOS\s*\|\s*[\d.]+\s*\|\s*[\d.]+\s*\|\s*([\d.]+)", scored.stdout, re.M).group(1))
    assert upos == pytest.approx(100 * scores["accuracy"], abs=0.006)


def test_plain_text_becomes_conllu(run, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("The dog can't bark.\n\nIt's 3.14 here!\n")
    nasty_train("tag", "--model_dir", run / "model", "--input", text, "--output", tmp_path / "out.conllu")
    sentences = read_sentences(tmp_path / "out.conllu")
    assert [s.tokens.metadata["sent_id"] for s in sentences] == ["1", "3"]  # input line numbers
    assert [s.words for s in sentences] == [["The", "dog", "ca", "n't", "bark", "."], ["It", "'s", "3.14", "here", "!"]]
    assert sentences[0].tokens.metadata["text"] == "The dog can't bark."
    assert sentences[0].labels("misc")[2] == "SpaceAfter=No" and sentences[0].labels("misc")[3] is None


@pytest.mark.slow
def test_a_broken_model_directory_says_what_is_missing(tmp_path, toy_treebank):
    (tmp_path / "config.json").write_text("{}")
    result = nasty_train("eval", "--model_dir", tmp_path, "--test_file", toy_treebank["dev"])
    assert result.returncode == 2
    assert "is not an exported model directory: missing model.safetensors" in result.stderr
    assert "Traceback" not in result.stderr


def cli_error(capsys, *args) -> str:
    """The message of ``nasty-train ARGS`` run in-process, checking its form: one line, exit status 2."""
    capsys.readouterr()  # what earlier commands printed
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nasty-train: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.removeprefix("nasty-train: error: ").rstrip("\n")


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_export_refuses_a_checkpoint_naming_an_unsafe_tokenizer_file(run, tmp_path, capsys, name):
    name = name.format(tmp=tmp_path)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["tokenizer_files"][name] = b"written by a hostile checkpoint"
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "model"
    err = cli_error(capsys, "export", "--ckpt_path", crafted, "--output_dir", out)
    assert err == f"checkpoint {crafted} names a file {name!r} that is not a tokenizer file; refusing it"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.ckpt", "out"]
    assert list((tmp_path / "out").iterdir()) == []  # neither out/model nor out/x (../x from out/model)


def test_exports_have_the_usual_permissions_and_replace_only_their_own_files(run, tmp_path, capsys):
    mask = os.umask(0)
    os.umask(mask)
    for file in (run / "model").iterdir():  # the export at the end of fit
        assert file.stat().st_mode & 0o777 == 0o666 & ~mask, file
    out, best = tmp_path / "m", run / "checkpoints" / "best.ckpt"
    main(["export", "--ckpt_path", str(best), "--output_dir", str(out)])
    (out / "model.onnx").write_bytes(b"from an earlier quantize")  # a file of the tool's own: replaced
    (out / "my_notes.txt").write_text("mine")  # the user's: kept, as they are
    (out / "eval_results").mkdir()
    (out / "eval_results" / "dev.json").write_text("{}")
    (out / "my_notes.txt").chmod(0o600)
    main(["export", "--ckpt_path", str(best), "--output_dir", str(out)])
    mine = ["eval_results", "my_notes.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in (run / "model").iterdir()] + mine)
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "my_notes.txt").stat().st_mode & 0o777 == 0o600
    assert (out / "eval_results" / "dev.json").read_text() == "{}"
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask and [p.name for p in tmp_path.iterdir()] == ["m"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    err = cli_error(capsys, "export", "--ckpt_path", best, "--output_dir", mine)
    assert err.startswith(f"--output_dir {mine}: the folder holds files but no nasty_lightning.json")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    err = cli_error(capsys, "export", "--ckpt_path", best, "--output_dir", tmp_path / "no" / "m")
    assert err == f"--output_dir {tmp_path}/no/m: the folder {tmp_path}/no does not exist"


def test_bf16_tags_as_float32_does_with_bfloat16_weights(run, toy_treebank, monkeypatch):
    words = [s.words for s in read_sentences(toy_treebank["dev"])]
    full = Tagger.load(run / "model").predict(words)["upos"]
    half = Tagger.load(run / "model", precision="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    tags = half.predict(words)["upos"]
    same = sum(a == b for x, y in zip(full, tags, strict=True) for a, b in zip(x, y, strict=True))
    assert same >= 0.95 * sum(map(len, words))
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):  # auto: bf16 only where native
        monkeypatch.setattr("nasty_lightning.inference.runtime.cpu_has_native_bf16", lambda native=native: native)
        assert next(Tagger.load(run / "model", precision="auto").model.parameters()).dtype == dtype
    with pytest.raises(UserError, match="--precision must be one of float32, bf16, auto, got 'fp16'"):
        Tagger.load(run / "model", precision="fp16")
