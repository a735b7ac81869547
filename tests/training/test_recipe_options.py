"""What the accuracy recipes use: the defaults fit chooses (and prints), layer-wise learning-rate decay, label
smoothing, and weight averaging (``callbacks.EMA``, on Lightning's ``WeightAveraging``)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from clirun import fit_args, metrics, nasty_train
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from nasty_lightning.data.batch import Batch
from nasty_lightning.errors import UserError
from nasty_lightning.formats.untrusted import load_checkpoint
from nasty_lightning.training.callbacks import EMA, EMAUpdate
from nasty_lightning.training.module import TokenTagger
from nasty_lightning.training.optimisation import default_head_learning_rate, encoder_groups


def test_the_heads_learn_faster_the_fewer_steps_a_run_has():
    assert default_head_learning_rate(96) == pytest.approx(1e-3 * (2000 / 96) ** 0.5)  # 500 sentences, 3 epochs
    assert [default_head_learning_rate(n) for n in (1, 20, 2000, 2352, 100_000)] == [1e-2, 1e-2, 1e-3, 1e-3, 1e-3]


def test_word_columns_after_the_first_weigh_less_by_default(tiny_bert):
    labels = {"upos": ["NOUN", "VERB"], "xpos": ["NN", "VB"], "label": ["news", "blog"]}  # label: a text's
    assert TokenTagger(str(tiny_bert), labels=labels).loss_weights == [1.0, 0.2, 1.0]
    assert TokenTagger(str(tiny_bert), labels=labels, loss_weights={"xpos": 0.7}).loss_weights == [1.0, 0.7, 1.0]


def test_layer_decay_gives_each_layer_its_rate(tiny_bert):
    module = TokenTagger(str(tiny_bert), labels=["NOUN", "VERB"])
    named = [(n, p) for n, p in module.named_parameters() if "classifier" not in n]
    groups = encoder_groups(named, 1e-4, 0.5)
    assert sorted(id(p) for params, _ in groups for p in params) == sorted(id(p) for _, p in named)  # each once
    rate = {name: lr for params, lr in groups for name, p in named if any(p is q for q in params)}
    assert rate["model.bert.encoder.layer.1.output.dense.weight"] == pytest.approx(1e-4)  # the top layer (of 2)
    assert rate["model.bert.encoder.layer.0.output.dense.weight"] == pytest.approx(5e-5)
    assert rate["model.bert.embeddings.word_embeddings.weight"] == pytest.approx(2.5e-5)
    assert encoder_groups(named, 1e-4, 1.0) == [([p for _, p in named], 1e-4)]
    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match="--model.layer_decay must be above 0 and at most 1"):
            TokenTagger(str(tiny_bert), labels=["NOUN", "VERB"], layer_decay=bad)


def test_label_smoothing_shapes_the_training_loss_only(tiny_bert):
    torch.manual_seed(0)
    module = TokenTagger(str(tiny_bert), labels=["NOUN", "VERB", "DET"], label_smoothing=0.2)
    labels = torch.tensor([[-100, 0, 1, 2, -100]])[..., None]
    batch = Batch(torch.tensor([[2, 7, 8, 9, 3]]), torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 5), labels)
    for training, smoothing in ((True, 0.2), (False, 0.0)):
        module.train(training)
        loss, *_, logits = module._step(batch)
        expected = F.cross_entropy(logits[0][0, 1:4], labels[0, 1:4, 0], reduction="sum", label_smoothing=smoothing)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(UserError, match="--model.label_smoothing must be at least 0 and below 1"):
        TokenTagger(str(tiny_bert), labels=["NOUN"], label_smoothing=1.0)


@pytest.mark.slow
@pytest.mark.integration
def test_fit_prints_the_defaults_it_chose(morphology, tiny_bert, tmp_path):
    columns = ("--data.label_column", "[upos, xpos, lemma]", "--trainer.max_epochs", "1")
    result = nasty_train(
        *fit_args(tiny_bert, morphology, tmp_path / "a", *columns, "--model.loss_weights", "{lemma: 1}")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 8 steps: the heads at 1e-3 * sqrt(2000 / 8), at most 1e-2; xpos at the default weight 0.2
    assert (
        "learning rates: encoder 1.0e-03, heads 1.0e-02 (default for 8 steps); "
        "loss weights: upos 1, xpos 0.2, lemma 1 (default 0.2 for the word columns after the first)"
    ) in result.stdout
    given = ("--model.head_learning_rate", "2e-3", "--model.loss_weights", "{xpos: 0.5, lemma: 0.1}")
    result = nasty_train(*fit_args(tiny_bert, morphology, tmp_path / "b", *columns, *given))
    assert (
        "learning rates: encoder 1.0e-03, heads 2.0e-03; loss weights: upos 1, xpos 0.5, lemma 0.1\n" in result.stdout
    )


@pytest.mark.slow
@pytest.mark.integration
def test_weight_averaging_is_what_validation_scores_and_export_writes(toy_treebank, tiny_bert, tmp_path):
    run = tmp_path / "run"
    ema = ("--trainer.callbacks+=nasty_lightning.training.callbacks.EMA", "--trainer.callbacks.decay", "0.8")
    result = nasty_train(*fit_args(tiny_bert, toy_treebank, run, *ema, "--model.validation_precision", "float32"))
    assert result.returncode == 0, result.stderr[-3000:]
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")
    averaged, current = best["state_dict"], best["current_model_state"]
    key = "model.classifier.weight"
    assert not torch.equal(averaged[key], current[key])
    exported = load_file(run / "model" / "model.safetensors")
    assert torch.equal(exported["classifier.weight"], averaged[key].to(exported["classifier.weight"].dtype))
    # validation scored the averaged weights: eval of the exported model gives the best validation accuracy
    score = max(float(r["val_acc"]) for r in metrics(run) if r.get("val_acc"))
    out = tmp_path / "eval.json"
    result = nasty_train("eval", "--model_dir", run / "model", "--test_file", toy_treebank["dev"], "--output_json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(score, abs=1e-6)


def test_the_moving_average_warms_its_decay_up_and_without_warmup_is_lightnings():
    model = torch.nn.Linear(1, 1, bias=False)
    averages = {
        "warm": AveragedModel(model, avg_fn=EMAUpdate(decay=0.99, warmup=True)),
        "cold": AveragedModel(model, avg_fn=EMAUpdate(decay=0.99, warmup=False)),
        "lightning": AveragedModel(model, avg_fn=get_ema_avg_fn(0.99)),
    }
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0] + [10.0] * 100):
        with torch.no_grad():
            model.weight.fill_(value)
        for average in averages.values():
            average.update_parameters(model)
        decay = min(0.99, (1 + n) / (10 + n))  # the first update copies the weights (n = 0: decay 0.1 unused)
        expected = value if n == 0 else decay * expected + (1 - decay) * value
        assert averages["warm"].module.weight.item() == pytest.approx(expected, rel=1e-5)
        assert averages["cold"].module.weight.item() == pytest.approx(averages["lightning"].module.weight.item())
    # after 104 updates the warm average has all but forgotten the first weights, the cold one has not
    assert averages["warm"].module.weight.item() > 9.9 and averages["cold"].module.weight.item() < 8
    with pytest.raises(UserError, match="EMA decay must be between 0 and 1, got 1.5"):
        EMA(decay=1.5)
