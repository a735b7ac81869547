"""Several heads in one model: UPOS, XPOS, FEATS and LEMMA from one encoder pass."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from clirun import fit_args, metrics, nasty_train
from conftest import FIXTURES, SHARED_DATA

from nasty_lightning.commands.evaluate import alltags
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.formats.model_dir import LEXICON_FILE, read_lexicon
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.labels.heads import IGNORE, Head, LabelSchema, LabelVocab, label_columns
from nasty_lightning.labels.lemmas import LemmaLexicon, apply_script, check_script, coverage, edit_script
from nasty_lightning.training.module import TokenTagger
from nasty_lightning.training.scores import Scores

COLUMNS = ["upos", "xpos", "feats", "lemma"]
UDEVAL = {"upos": "UPOS", "xpos": "XPOS", "feats": "UFeats", "lemma": "Lemmas"}
EWT_DEV = SHARED_DATA / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu"
V1 = FIXTURES / "v1_upos"


@pytest.mark.parametrize(
    ("form", "lemma", "script"),
    [
        ("studies", "study", '["lower",0,"",3,"y"]'),
        ("The", "the", '["lower",0,"",0,""]'),
        ("Monday", "Monday", '["keep",0,"",0,""]'),
        ("I", "I", '["keep",0,"",0,""]'),
        ("SAYS", "say", '["lower",0,"",1,""]'),
        ("went", "go", '["=","go"]'),
        ("n't", "not", '["lower",0,"",2,"ot"]'),
    ],
)
def test_edit_scripts(form, lemma, script):
    assert edit_script(form, lemma) == script
    assert apply_script(script, form) == lemma


def test_a_script_generalises_and_never_fails():
    assert apply_script(edit_script("studies", "study"), "Flies") == "fly"  # lower-cased, then -ies -> -y
    assert apply_script(edit_script("Mondays", "Monday"), "Fridays") == "Friday"  # casing kept
    assert apply_script('["lower",0,"",5,""]', "Cat") == "cat"  # cuts more than the word has: the word
    assert apply_script('["lower",0,"",1,""]', "S") == "s"  # cuts all it has: the word, never an empty lemma


def test_a_script_that_writes_an_empty_lemma_is_refused():
    with pytest.raises(UserError, match="is not a lemma edit script"):
        check_script('["=",""]', "model/nasty_lightning.json")


@pytest.mark.skipif(not EWT_DEV.is_file(), reason="needs UD English-EWT dev")
def test_edit_scripts_round_trip_every_pair_of_ewt_dev():
    sentences = read_sentences(EWT_DEV)
    # every syntactic word, those of multiword tokens (do + n't) and those without a lemma (_) included
    pairs = [(t["form"], t["lemma"]) for s in sentences for t in s.tokens if isinstance(t["id"], int)]
    assert len(pairs) == sum(len(s.words) for s in sentences) > 25_000
    assert any(lemma == "_" for _, lemma in pairs) and any(form in ("I", "Monday") for form, _ in pairs)
    in_ranges = {t["id"][0] for s in sentences for t in s.tokens if isinstance(t["id"], tuple) and t["id"][1] == "-"}
    assert in_ranges  # the file has multiword tokens, whose words are among the pairs
    for form, lemma in pairs:
        assert apply_script(edit_script(form, lemma), form) == lemma, (form, lemma)
    scripts = {edit_script(f, lemma) for f, lemma in pairs}
    assert coverage(pairs, scripts) == (len(pairs), len(pairs))
    assert coverage(pairs, set()) == (0, len(pairs))


def test_label_vocabulary_owns_ids_and_the_unseen_id():
    vocab = LabelVocab.of(["NOUN", "DET", None, "NOUN"])
    assert vocab.labels == ("DET", "NOUN") and vocab.unseen == 2
    assert [vocab.encode(v) for v in ("NOUN", "INTJ", None)] == [1, 2, IGNORE]
    assert "DET" in vocab and "INTJ" not in vocab and vocab.decode(0) == "DET"
    lemma = Head("lemma", LabelVocab.of([edit_script("sat", "sit")]))
    assert lemma.decode([0], ["sat"]) == ["sit"]
    with pytest.raises(Exception, match="names upos more than once"):
        label_columns(["upos", "xpos", "upos"])


def test_alltags_counts_a_word_right_only_when_every_tag_is():
    scores = Scores(LabelSchema.from_dict({c: ["A", "B", "C", "D"] for c in ["upos", "xpos", "feats", "lemma"]}))
    # one row of four words; heads upos, xpos, feats, lemma
    targets = torch.tensor([[[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [IGNORE] * 4]])
    preds = torch.tensor([[[1, 1, 1, 0], [2, 0, 2, 2], [3, 3, 3, 3], [0, 0, 0, 0]]])
    scores.update(preds, targets)
    named = {k: float(m.compute()) for k, m in scores.named("val").items()}
    # the lemma is no tag: word 1 is right in all three tags although its lemma is wrong
    assert named == {
        "val_acc": 1.0,
        "val_xpos": pytest.approx(2 / 3),
        "val_feats": 1.0,
        "val_lemma": pytest.approx(2 / 3),
        "val_alltags": pytest.approx(2 / 3),
    }
    assert "val_alltags" not in Scores(LabelSchema.from_dict({"upos": ["A"], "lemma": ["B"]})).named("val")


def test_alltags_of_eval_on_a_hand_made_sentence(tmp_path):
    path = tmp_path / "g.conllu"
    path.write_text(
        "1\tA\ta\tDET\tDT\t_\t0\troot\t_\t_\n2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t1\tdep\t_\t_\n"
        "3\truns\trun\tVERB\tVBZ\tNumber=Sing\t1\tdep\t_\t_\n\n"
    )
    sentences = read_sentences(path)
    predicted = {"upos": [["DET", "NOUN", "VERB"]], "xpos": [["DT", "NN", "VBD"]], "feats": [["_", "_", "Number=Sing"]]}
    assert alltags(sentences, predicted, ["upos", "xpos", "feats"]) == {
        "accuracy": 1 / 3,
        "total": 3,
        "correct": 1,
        "columns": ["upos", "xpos", "feats"],
    }


@pytest.fixture(scope="module")
def four_heads(tiny_bert, morphology, tmp_path_factory):
    root = tmp_path_factory.mktemp("four")
    args = fit_args(tiny_bert, morphology, root, "--data.label_column", "[upos, xpos, feats, lemma]")
    # validation in float32: in bf16 this tiny model's scores can turn on a rounding, and early stopping with them
    float32 = ("--model.validation_precision", "float32")
    result = nasty_train(
        *args, *float32, "--model.learning_rate", "2e-3", "--trainer.max_epochs", "6", "--monitor", "alltags"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


@pytest.mark.slow
@pytest.mark.integration
def test_a_tiny_model_learns_every_head(four_heads):
    root, result = four_heads
    rows = [r for r in metrics(root) if r["val_acc"]]
    for name in ("val_acc", "val_xpos", "val_feats", "val_lemma", "val_alltags"):
        first, last = float(rows[0][name]), float(rows[-1][name])
        assert last > first + 0.1 or last > 0.9, (name, first, last)
    assert float(rows[-1]["val_alltags"]) <= min(float(rows[-1][n]) for n in ("val_acc", "val_xpos", "val_feats"))
    lines = result.stdout.splitlines()
    epoch = next(i for i, line in enumerate(lines) if re.match(r"Epoch \d completed. validation_loss: ", line))
    assert lines[epoch + 1].startswith("other columns: xpos: ") and ", alltags: " in lines[epoch + 1]
    card = (root / "model" / "README.md").read_text()
    assert "best checkpoint chosen by | val_alltags = " in card and "| lemma | " in card and "| alltags | " in card


@pytest.mark.slow
@pytest.mark.integration
def test_tag_fills_exactly_the_four_columns_and_udeval_agrees_with_eval(four_heads, morphology, tmp_path):
    root, _ = four_heads
    model = root / "model"
    gold = morphology["dev"]
    blank = tmp_path / "blank.conllu"  # the predicted columns emptied, the rest as it was
    lines = gold.read_text().split("\n")
    blank.write_text(
        "\n".join(
            "\t".join(c if i not in (2, 3, 4, 5) else "_" for i, c in enumerate(line.split("\t")))
            if "\t" in line
            else line
            for line in lines
        )
    )
    tagged = tmp_path / "tagged.conllu"
    assert nasty_train("tag", "--model_dir", model, "--input", blank, "--output", tagged).returncode == 0
    for before, after in zip(blank.read_text().split("\n"), tagged.read_text().split("\n"), strict=True):
        if "\t" not in before:
            assert before == after
            continue
        b, a = before.split("\t"), after.split("\t")
        assert [b[i] for i in (0, 1, 6, 7, 8, 9)] == [a[i] for i in (0, 1, 6, 7, 8, 9)]
        assert all(a[i] != "" for i in (2, 3, 4, 5))
    result = nasty_train("eval", "--model_dir", model, "--test_file", gold, "--output_json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["accuracy"] == scores["columns"]["upos"]["accuracy"] and set(scores["columns"]) == set(COLUMNS)
    reachable = scores["columns"]["lemma"]["reachable"]
    assert reachable["of"] == 127 and reachable["lemmas"] == 127  # the dev file's scripts all occur in training
    assert "127 of 127 gold lemmas (100.00%) have an edit script it knows" in result.stdout
    official = udeval(gold, tagged)
    assert scores["columns"]["feats"]["ufeats"]["total"] == 127
    for column, name in UDEVAL.items():
        ours = (scores["columns"][column]["ufeats"] if column == "feats" else scores["columns"][column])["accuracy"]
        assert official[name] == pytest.approx(100 * ours, abs=0.006), column
    assert official["AllTags"] == pytest.approx(100 * scores["alltags"]["accuracy"], abs=0.006)
    # and Tagger returns every column, in the model's order
    tagger = Tagger.load(model)
    assert tagger.columns == COLUMNS
    [sentence] = tagger.tag([["the", "cat", "sat", "."]])
    assert [len(word) for word in sentence] == [5] * 4 and sentence[0][0] == "the"


@pytest.mark.slow
@pytest.mark.integration
def test_the_lemma_lexicon_travels_with_the_model_and_tagging_uses_it(four_heads, morphology, tmp_path):
    root, _ = four_heads
    model = root / "model"
    learned = LemmaLexicon.learn(read_sentences(morphology["train"]), "upos")
    assert read_lexicon(model) == learned.to_dict()  # from the checkpoint's data state, by export
    assert f"checked against the lemmas training gave each word (`{LEXICON_FILE}`)" in (model / "README.md").read_text()
    tagger = Tagger.load(model)
    [[the, cat]] = tagger.tag([["the", "cat"]])
    assert cat[1] == "NOUN" and cat[4] == "cat"
    for tag, lemma in (("NOUN", "feline"), ("VERB", "cat")):  # a lemma "cat" never had; a tag it was never seen with
        other = replace(tagger, lexicon=LemmaLexicon("upos", {f"cat\t{tag}": ["feline"]}))
        assert other.tag([["the", "cat"]])[0][1][4] == lemma
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    (copy / LEXICON_FILE).write_text('{"tag_column": "deprel", "lemmas": {}}')
    with pytest.raises(UserError, match=f"^{re.escape(str(copy / LEXICON_FILE))}: a lemma lexicon must be"):
        Tagger.load(copy)
    out = tmp_path / "int8"
    result = nasty_train(
        "quantize", "--model_dir", model, "--calibration_file", morphology["dev"], "--output_dir", out,
        "--max_accuracy_drop", "100", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / LEXICON_FILE).read_bytes() == (model / LEXICON_FILE).read_bytes()
    assert Tagger.load(out).lexicon == tagger.lexicon


def udeval(gold: Path, system: Path) -> dict[str, float]:
    """The UD scorer's (udtools' ``udeval``) accuracies, in percent."""
    udeval_bin = shutil.which("udeval", path=str(Path(sys.executable).parent))
    out = subprocess.run([udeval_bin, "-v", gold, system], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4 and "AligndAcc" not in line]
    return {r[0].strip(): float(r[4]) for r in rows if r[4].strip()}


@pytest.mark.slow
@pytest.mark.integration
def test_the_encoder_runs_once_for_every_head(four_heads, monkeypatch):
    tagger = Tagger.load(four_heads[0] / "model")
    calls = []
    encoder = tagger.model.bert
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    tagger.predict([["the", "cat", "sat", "."]] * 3)
    assert len(calls) == 1  # one batch, one pass, four columns


@pytest.mark.slow
@pytest.mark.integration
def test_a_monitor_that_is_not_logged_is_refused(tiny_bert, morphology, tmp_path):
    args = fit_args(tiny_bert, morphology, tmp_path, "--data.label_column", "[upos, lemma]", "--monitor", "alltags")
    result = nasty_train(*args)
    assert result.returncode == 2
    assert (
        "--checkpoint.monitor val_alltags is not a validation metric of this model (val_acc, val_lemma, val_loss)"
        in result.stderr
    )


def test_predict_is_no_command():
    result = nasty_train("predict", "--ckpt_path", "x.ckpt")
    assert result.returncode == 2 and "there is no predict command: tag a file with nasty-train tag" in result.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_single_column_checkpoints_and_models_from_before_still_work(toy_treebank, tmp_path):
    """``fixtures/v1_upos``: a run of the code before several heads (tiny BERT, toy treebank, 2 epochs): its
    best.ckpt, its exported model, and that model's tags of the toy dev file, as that code wrote them."""
    expected = (V1 / "dev.tagged.conllu").read_text()
    dev = toy_treebank["dev"]
    # the exported model: same tags, byte for byte
    out = tmp_path / "old_model.conllu"
    assert nasty_train("tag", "--model_dir", V1 / "model", "--input", dev, "--output", out).returncode == 0
    assert out.read_text() == expected
    result = nasty_train("eval", "--model_dir", V1 / "model", "--test_file", dev)
    assert result.returncode == 0 and "accuracy: 0.5669 (72 of 127 words correct)" in result.stdout
    # the checkpoint: test scores it, and export writes a model that tags as the old export did
    result = nasty_train(
        "test", "--ckpt_path", V1 / "best.ckpt", "--data.test_file", dev, "--trainer.default_root_dir", tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0.5669" in result.stdout  # test_acc, 72 of 127
    assert nasty_train("export", "--ckpt_path", V1 / "best.ckpt", "--output_dir", tmp_path / "exp").returncode == 0
    assert nasty_train("tag", "--model_dir", tmp_path / "exp", "--input", dev, "--output", out).returncode == 0
    assert out.read_text() == expected
    assert Tagger.load(tmp_path / "exp").columns == ["upos"]


@pytest.mark.slow
@pytest.mark.integration
def test_a_checkpoint_of_four_heads_scores_every_column(four_heads, morphology, tmp_path):
    root, _ = four_heads
    best = root / "checkpoints" / "best.ckpt"
    result = nasty_train(
        "test", "--ckpt_path", best, "--data.test_file", morphology["dev"], "--trainer.default_root_dir", tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((root / "model" / "nasty_lightning.json").read_text())
    assert [h["column"] for h in scores["heads"]] == ["xpos", "feats", "lemma"]
    for name in ("test_acc", "test_xpos", "test_feats", "test_lemma", "test_alltags"):
        assert name in result.stdout, name


@pytest.mark.slow
@pytest.mark.integration
def test_a_warm_start_keeps_every_head_row_by_label_name(four_heads):
    best = four_heads[0] / "checkpoints" / "best.ckpt"
    saved = torch.load(best, weights_only=True)
    old_xpos = saved["TaggingDataModule"]["labels"]["xpos"]
    new_xpos = ["NEW", *reversed(old_xpos)]  # a new tag, and the old ones in another order
    labels = {**saved["TaggingDataModule"]["labels"], "xpos": new_xpos}
    model = TokenTagger(str(best), labels)
    weight = saved["state_dict"]["heads.xpos.weight"]
    for i, tag in enumerate(new_xpos[1:], start=1):
        assert torch.equal(model.heads["xpos"].weight[i], weight[old_xpos.index(tag)]), tag
    assert not torch.equal(model.heads["xpos"].weight[0], weight[0])  # NEW starts untrained
    assert torch.equal(model.heads["lemma"].weight, saved["state_dict"]["heads.lemma.weight"])


@pytest.mark.integration
def test_the_heads_follow_the_model_to_another_dtype(four_heads):
    tagger = Tagger.load(four_heads[0] / "model")
    words = [["the", "cat", "sat", "."]]
    before = tagger.predict(words)
    tagger.model.to(torch.bfloat16)
    after = tagger.predict(words)  # the heads were float32: they now compute in bfloat16 with the encoder
    assert set(after) == set(before) == set(COLUMNS) and all(len(after[c][0]) == 4 for c in COLUMNS)


@pytest.mark.slow
@pytest.mark.integration
def test_a_model_directory_with_a_bad_lemma_script_is_refused(four_heads, morphology, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(four_heads[0] / "model", model)
    meta = json.loads((model / "nasty_lightning.json").read_text())
    lemma = next(h for h in meta["heads"] if h["column"] == "lemma")
    lemma["labels"][0] = '["lower",0,"",-3,"y"]'
    (model / "nasty_lightning.json").write_text(json.dumps(meta))
    result = nasty_train("tag", "--model_dir", model, "--input", morphology["dev"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    bad = """'["lower",0,"",-3,"y"]'"""
    assert result.stderr.strip().endswith(f"nasty_lightning.json: {bad} is not a lemma edit script")
