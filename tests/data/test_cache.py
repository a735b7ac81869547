"""The encoding cache: reused when nothing changed, rebuilt when the file, tokenizer or max length change."""

from __future__ import annotations

import pytest

from nasty_lightning.data import datamodule as data_module
from nasty_lightning.data.datamodule import TaggingDataModule


def setup_fit(model, treebank, cache_dir, max_length=64) -> TaggingDataModule:
    data = TaggingDataModule(
        str(treebank["train"]),
        str(treebank["dev"]),
        model_name=str(model),
        max_length=max_length,
        cache_dir=str(cache_dir),
    )
    data.prepare_data()
    data.setup("fit")
    return data


def test_reused_when_nothing_changed(tiny_bert, toy_treebank, tmp_path, monkeypatch):
    first = setup_fit(tiny_bert, toy_treebank, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # train and dev

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again although the cache holds the result")

    monkeypatch.setattr(data_module, "encode", no_encoding)
    second = setup_fit(tiny_bert, toy_treebank, tmp_path)
    assert second.datasets == first.datasets
    assert second.file_stats == first.file_stats


@pytest.mark.parametrize("change", ["max_length", "tokenizer", "file"])
def test_rebuilt_when_an_input_changes(change, tiny_bert, tiny_roberta, toy_treebank, tmp_path):
    setup_fit(tiny_bert, toy_treebank, tmp_path)
    before = set(tmp_path.glob("*.pt"))
    if change == "max_length":
        setup_fit(tiny_bert, toy_treebank, tmp_path, max_length=48)
    elif change == "tokenizer":
        setup_fit(tiny_roberta, toy_treebank, tmp_path)
    else:
        edited = tmp_path / "edited" / "dev.conllu"
        edited.parent.mkdir()
        edited.write_text(toy_treebank["dev"].read_text().replace("\tcat\t", "\tdog\t"))
        setup_fit(tiny_bert, {**toy_treebank, "dev": edited}, tmp_path)
    new = set(tmp_path.glob("*.pt")) - before
    assert len(new) == (1 if change == "file" else 2)
