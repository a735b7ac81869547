"""The layer mix (--model.layer_mix): the heads read a learned mix of the encoder's layers, and every way of
using the model (export, Tagger, eval, quantize, warm start) reads the same mix."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import fit_args, metrics, nasty_train
from safetensors.torch import load_file

from nasty_lightning.data.batch import Batch
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import LAYER_MIX_FILE, META_FILE, read_meta
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.modelling.layer_mix import LayerMix
from nasty_lightning.training.module import TokenTagger


def test_a_new_mix_is_the_mean_of_the_layers_and_the_first_head_reads_it(tiny_bert):
    states = tuple(torch.randn(2, 5, 8) for _ in range(3))
    assert torch.allclose(LayerMix(3)(states), torch.stack(states).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="3 weights for 2 hidden states"):
        LayerMix(3)(states[:2])

    module = TokenTagger(str(tiny_bert), labels={"upos": ["NOUN", "VERB"], "xpos": ["NN", "VB", "VBD"]}, layer_mix=True)
    module.eval()
    batch = Batch(torch.tensor([[2, 7, 8, 3]]), torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))
    with torch.no_grad():
        first, xpos = module(batch)
        out = module.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
        mean = torch.stack(out.hidden_states).mean(0)
    assert len(out.hidden_states) == module.model.config.num_hidden_layers + 1
    assert torch.allclose(first, module.model.classifier(mean), atol=1e-5)
    assert torch.allclose(xpos, module.heads["xpos"](mean), atol=1e-5)


def test_a_mix_is_refused_where_the_first_column_labels_texts(tiny_bert):
    with pytest.raises(UserError, match="--model.layer_mix needs a first column that labels words; label labels"):
        TokenTagger(str(tiny_bert), labels={"label": ["a", "b"]}, layer_mix=True)


@pytest.mark.slow
@pytest.mark.integration
def test_the_mix_learns_and_travels_with_the_model(morphology, tiny_bert, tmp_path):
    run = tmp_path / "run"
    args = fit_args(tiny_bert, morphology, run, "--model.layer_mix", "true", "--data.label_column", "[upos, xpos]")
    result = nasty_train(*args, "--model.validation_precision", "float32", "--model.casing", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = run / "model"
    assert read_meta(model_dir)["layer_mix"] == 3  # the embeddings and two layers
    mix = load_file(model_dir / LAYER_MIX_FILE)
    assert not torch.allclose(mix["weights"], torch.zeros(3))  # learned
    assert "only `Tagger`" in (model_dir / "README.md").read_text()

    # eval of the model directory (Tagger) scores what validation scored with the same weights
    best = max(float(r["val_acc"]) for r in metrics(run) if r.get("val_acc"))
    out = tmp_path / "eval.json"
    result = nasty_train("eval", "--model_dir", model_dir, "--test_file", morphology["dev"], "--output_json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(best, abs=1e-6)

    # Tagger reads the mix: scaled to 0, the heads see nothing but their biases (one tag for every word)
    sentences = [["the", "cat", "sat"], ["a", "dog", "ran", "home"]] * 4
    tagger = Tagger.load(model_dir)
    with_mix = tagger.predict(sentences)
    assert len({tag for s in with_mix["upos"] for tag in s}) > 1
    with torch.no_grad():
        tagger.mix.scale.zero_()
    assert len({tag for s in tagger.predict(sentences)["upos"] for tag in s}) == 1

    # quantized, the graph holds the mix: it tags as the float model does, nearly everywhere
    int8 = tmp_path / "int8"
    result = nasty_train(
        "quantize", "--model_dir", model_dir, "--calibration_file", morphology["train"], "--output_dir", int8
    )
    assert result.returncode == 0, result.stderr[-3000:]
    quantized = Tagger.load(int8).predict(sentences)
    pairs = [
        (a, b)
        for c in with_mix
        for x, y in zip(with_mix[c], quantized[c], strict=True)
        for a, b in zip(x, y, strict=True)
    ]
    same = sum(a == b for a, b in pairs)
    assert same >= 0.9 * len(pairs)
    assert Tagger.load(model_dir).predict(sentences) == with_mix

    # a warm start from the model keeps its mix
    warm = TokenTagger(str(model_dir), labels={"upos": tagger.heads[0].vocab.labels}, layer_mix=True)
    assert torch.equal(warm.layer_mix.weights.detach(), mix["weights"])


def test_a_model_dir_with_a_bad_mix_size_is_refused(tmp_path):
    (tmp_path / META_FILE).write_text(json.dumps({"label_column": "upos", "max_length": 64, "layer_mix": "all"}))
    with pytest.raises(UserError, match="'layer_mix' must be the number of hidden states"):
        read_meta(tmp_path)
