"""The data module: label vocabulary, unseen labels, long sentences."""

from __future__ import annotations

import logging
import math

import lightning as L
import pytest
from toy_data import toy_sentences, write_conllu

from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.data.encoding import IGNORE
from nasty_lightning.errors import UserError
from nasty_lightning.training.module import TokenTagger


def test_vocabulary_is_sorted_and_from_training_only(tiny_bert, toy_treebank):
    data = TaggingDataModule(str(toy_treebank["train"]), str(toy_treebank["dev"]), model_name=str(tiny_bert))
    assert data.label_vocab == ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]
    assert data.state_dict()["labels"] == data.label_vocab


def test_evaluation_has_its_own_batch_size(tiny_bert, toy_treebank):
    data = TaggingDataModule(
        str(toy_treebank["train"]), str(toy_treebank["dev"]), model_name=str(tiny_bert), batch_size=4, eval_batch_size=5
    )
    data.setup("fit")
    assert [len(b) for b in data._loader("val", shuffle=False).batch_sampler] == [5, 5, 5, 2]  # 17 sentences
    assert {len(b) for b in data._loader("train", shuffle=True).batch_sampler} == {4}  # 64 sentences
    with pytest.raises(UserError, match="eval_batch_size must be positive"):
        TaggingDataModule(str(toy_treebank["train"]), model_name=str(tiny_bert), eval_batch_size=0)


def test_unseen_labels_warn_once_and_score_as_wrong(tiny_bert, toy_treebank, tmp_path):
    unseen = [[(w, "INTJ" if t == "NOUN" else "SYM") for w, t in s] for s in toy_sentences(5, seed=3)]
    dev = write_conllu(tmp_path / "dev.conllu", unseen)
    data = TaggingDataModule(str(toy_treebank["train"]), str(dev), model_name=str(tiny_bert), batch_size=2)
    with pytest.warns(UserWarning, match=r"dev.conllu: \d+ words carry upos labels not seen in training \(INTJ, SYM\)"):
        data.setup("validate")
    assert all(labels == (len(data.label_vocab),) for w in data.datasets["val"] for labels in w.labels)
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


def with_feats(path, sentences):
    """The toy treebank with FEATS as real UD files have them: ``_`` on most words (no features)."""
    feats = {"NOUN": "Number=Sing", "VERB": "Tense=Past", "DET": "Definite=Def|PronType=Art"}
    write_conllu(path, sentences)
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        columns = line.split("\t")
        if len(columns) == 10 and columns[1] not in {"a", "every", "this"}:  # "the" only is Definite=Def
            columns[5] = feats.get(columns[3], "_")
            lines[i] = "\t".join(columns)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_feats_column_learns_underscore_as_a_label(tiny_bert, tmp_path):
    train = with_feats(tmp_path / "train.conllu", toy_sentences(16, seed=0))
    dev = with_feats(tmp_path / "dev.conllu", toy_sentences(5, seed=1))
    data = TaggingDataModule(
        str(train), str(dev), label_column="feats", model_name=str(tiny_bert), batch_size=4, cache_dir=None
    )
    assert data.label_vocab == ["Definite=Def|PronType=Art", "Number=Sing", "Tense=Past", "_"]
    data.setup("fit")
    for split, path in (("train", train), ("val", dev)):
        labels = [label for w in data.datasets[split] for (label,) in w.labels]
        assert len(labels) == data.file_stats[str(path)]["words"]
        assert IGNORE not in labels and len(data.label_vocab) not in labels  # every word has a label: _ too
        assert labels.count(data.heads[0].vocab.encode("_")) > len(labels) / 3  # ADJ, ADP, PUNCT and a/every/this
    # and in batches: every word's first subword carries its label, into the loss and the accuracy
    batches = list(data.val_dataloader())
    assert sum(int((b.labels != IGNORE).sum()) for b in batches) == sum(int(b.word_mask.sum()) for b in batches)
