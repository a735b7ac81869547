"""``fixtures/v2_heads``: a checkpoint and an export of five heads with casing, as the code before the label schema
wrote them (fixtures/v2_heads/README.md). They load, tag, evaluate, test, export and warm-start as they did."""

from __future__ import annotations

import pytest
import torch
from clirun import nasty_train, printed_metric
from conftest import FIXTURES

from nasty_lightning.data.batching import collate
from nasty_lightning.data.encoding import encode
from nasty_lightning.data.packing import pack
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.modelling.network import Network
from nasty_lightning.training.module import TokenTagger

V2 = FIXTURES / "v2_heads"
COLUMNS = ["upos", "xpos", "feats", "lemma", "ner"]
LABELS = {  # the checkpoint's labels, by column
    "upos": ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"],
    "xpos": [".", "DT", "IN", "JJ", "NN", "VBD"],
    "feats": ["Definite=Def|PronType=Art", "Definite=Ind|PronType=Art", "Number=Sing", "Tense=Past", "_"],
    "lemma": [
        '["keep",0,"",0,""]',
        '["lower",0,"",0,""]',
        '["lower",0,"",1,""]',
        '["lower",0,"",2,""]',
        '["lower",0,"",2,"it"]',
        '["lower",0,"",2,"un"]',
        '["lower",0,"",3,"y"]',
    ],
    "ner": ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"],
}
# ``nasty-train test --ckpt_path best.ckpt`` of dev.conllu, as that code printed it
TEST_SCORES = {
    "test_acc": 0.834645688533783,
    "test_alltags": 0.8188976645469666,
    "test_f1_ner": 0.6000000238418579,
    "test_f1_ner_LOC": 0.75,
    "test_f1_ner_PER": 0.0,
    "test_feats": 0.9842519760131836,
    "test_lemma": 0.9291338324546814,
    "test_loss": 3.070409059524536,
    "test_ner": 0.9291338324546814,
    "test_xpos": 0.9921259880065918,
}


def test_the_v2_model_loads_and_tags_every_column_as_it_did():
    tagger = Tagger.load(V2 / "model")
    assert tagger.columns == COLUMNS and tagger.casing is not None
    assert {h.column: list(h.vocab.labels) for h in tagger.heads} == LABELS
    assert tagger.tag("the big postman sat near Zürich .")[0][-2] == (
        "Zürich",
        "NOUN",
        "NN",
        "Number=Sing",
        "Zürich",
        "B-LOC",
    )


@pytest.mark.slow
@pytest.mark.integration
def test_the_v2_model_tags_and_evaluates_as_it_did(tmp_path):
    out = tmp_path / "tagged.conllu"
    result = nasty_train("tag", "--model_dir", V2 / "model", "--input", V2 / "dev.conllu", "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_text() == (V2 / "dev.tagged.conllu").read_text()
    result = nasty_train("eval", "--model_dir", V2 / "model", "--test_file", V2 / "dev.conllu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (V2 / "dev.eval.txt").read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_the_v2_checkpoint_tests_and_exports_as_it_did(tmp_path):
    result = nasty_train(
        "test", "--ckpt_path", V2 / "best.ckpt", "--data.test_file", V2 / "dev.conllu",
        "--trainer.default_root_dir", tmp_path,
        # the loss weights it was trained with (the default now weighs word columns after the first 0.2)
        "--model.loss_weights", "{xpos: 1, feats: 1, lemma: 1, ner: 1}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for name, value in TEST_SCORES.items():
        assert printed_metric(result.stdout, name) == pytest.approx(value, abs=1e-6), name
    assert nasty_train("export", "--ckpt_path", V2 / "best.ckpt", "--output_dir", tmp_path / "exp").returncode == 0
    written = sorted(p.name for p in (tmp_path / "exp").iterdir())
    assert written == sorted(p.name for p in (V2 / "model").iterdir())
    for name in written:  # the same files, byte for byte: the config's id2label and the metadata's heads too
        assert (tmp_path / "exp" / name).read_bytes() == (V2 / "model" / name).read_bytes(), name


@pytest.mark.parametrize("source", ["best.ckpt", "model"])
def test_a_warm_start_from_v2_takes_every_head_and_the_casing(source):
    saved = torch.load(V2 / "best.ckpt", weights_only=True)["state_dict"]
    model = TokenTagger(str(V2 / source), LABELS, casing=True)
    state = model.state_dict()
    for name in (
        "model.classifier.weight",
        "heads.xpos.weight",
        "heads.lemma.bias",
        "heads.ner.weight",
        "casing.weight",
    ):
        assert torch.equal(state[name], saved[name]), name
    assert torch.equal(
        state["model.bert.encoder.layer.1.output.dense.weight"], saved["model.bert.encoder.layer.1.output.dense.weight"]
    )
    # another order of the columns and of xpos's labels: rows follow the names
    xpos = ["NEW", *reversed(LABELS["xpos"])]
    moved = TokenTagger(str(V2 / source), {"xpos": xpos, "upos": LABELS["upos"], "ner": LABELS["ner"]}, casing=True)
    for i, tag in enumerate(xpos[1:], start=1):
        old = LABELS["xpos"].index(tag)
        assert torch.equal(moved.model.classifier.weight[i], saved["heads.xpos.weight"][old]), tag
    assert torch.equal(moved.heads["upos"].weight, saved["model.classifier.weight"])
    assert torch.equal(moved.heads["ner"].bias, saved["heads.ner.bias"])


def test_training_and_tagging_compute_the_same_logits():
    """One forward pass: the Lightning module (transformers' BERT) and the tagger's network (our BERT family) give
    every head the same logits on the same padded and packed batches."""
    tagger = Tagger.load(V2 / "model")
    module = TokenTagger(str(V2 / "best.ckpt"), LABELS, casing=True).eval()
    words = [s.split() for s in ("the big postman sat near Zürich .", "a cat ran", "every dog barked at this mat .")]
    windows = encode(words, tagger.tokenizer, tagger.max_length, long_words="truncate")
    network = Network(tagger.model, tagger.layers, tagger.casing)
    for batch in (collate(windows, tagger.tokenizer.pad_token_id), pack(windows, tagger.tokenizer.pad_token_id)[0]):
        with torch.no_grad():
            ours, theirs = module(batch), network.run(batch, torch.device("cpu"))
        assert len(ours) == len(theirs) == len(COLUMNS)
        for a, b in zip(ours, theirs, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
