"""The data module: label vocabulary, unseen labels, long sentences."""

from __future__ import annotations

import logging
import math

import lightning as L
import pytest
from toy_data import toy_sentences, write_conllu

from nasty_lightning.data import TaggingDataModule
from nasty_lightning.model import TokenTagger


def test_vocabulary_is_sorted_and_from_training_only(tiny_bert, toy_treebank):
    data = TaggingDataModule(str(toy_treebank["train"]), str(toy_treebank["dev"]), model_name=str(tiny_bert))
    assert data.label_vocab == ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]
    assert data.state_dict()["labels"] == data.label_vocab


def test_unseen_labels_warn_once_and_score_as_wrong(tiny_bert, toy_treebank, tmp_path):
    unseen = [[(w, "INTJ" if t == "NOUN" else "SYM") for w, t in s] for s in toy_sentences(5, seed=3)]
    dev = write_conllu(tmp_path / "dev.conllu", unseen)
    data = TaggingDataModule(str(toy_treebank["train"]), str(dev), model_name=str(tiny_bert), batch_size=2)
    with pytest.warns(UserWarning, match=r"dev.conllu: \d+ words carry labels not seen in training \(INTJ, SYM\)"):
        data.setup("validate")
    assert all(label == len(data.label_vocab) for w in data.datasets["val"] for label in w.labels)
    model = TokenTagger(str(tiny_bert), data.label_vocab)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    [result] = trainer.validate(model, datamodule=data)
    assert result["val_acc"] == 0.0  # every word's label is unknown, so none can be right
    assert math.isnan(result["val_loss"])  # and none enters the loss: a mean over no word is undefined


def test_long_sentences_are_reported(tiny_bert, toy_treebank, tmp_path, caplog):
    long = [toy_sentences(1, seed=4)[0] * 6]
    dev = write_conllu(tmp_path / "long.conllu", long + toy_sentences(3, seed=5))
    data = TaggingDataModule(str(toy_treebank["train"]), str(dev), model_name=str(tiny_bert), max_length=24)
    with caplog.at_level(logging.INFO):
        data.setup("validate")
    assert "long.conllu: 1 sentences longer than max_length=24 subwords were split" in caplog.text
    windows = data.datasets["val"]
    assert sum(len(w.labels) for w in windows if w.sentence == 0) == len(long[0])
