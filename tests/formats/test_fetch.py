"""Missing data files: downloaded from the treebank's repository, or a clear error."""

from __future__ import annotations

import pytest

from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.errors import UserError
from nasty_lightning.formats import fetch


@pytest.fixture
def mirror(tmp_path, monkeypatch, toy_treebank):
    """A local stand-in for the UD repositories, reached through a file:// URL."""
    repo = tmp_path / "mirror" / "UD_Toy"
    repo.mkdir(parents=True)
    (repo / "toy-ud-train.conllu").write_bytes(toy_treebank["train"].read_bytes())
    monkeypatch.setattr(fetch, "UD_RAW", f"file://{tmp_path}/mirror/{{treebank}}/{{file}}")
    return repo


def test_missing_training_file_is_downloaded(mirror, tmp_path):
    target = tmp_path / "data" / "toy-ud-train.conllu"
    data = TaggingDataModule(train_file=str(target), treebank="UD_Toy")
    assert target.read_bytes() == (mirror / "toy-ud-train.conllu").read_bytes()
    assert data.label_vocab == ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]


def test_failed_download_says_where_to_put_the_file(mirror, tmp_path):
    target = tmp_path / "data" / "toy-ud-dev.conllu"
    with pytest.raises(UserError, match="could not be downloaded.*Put the file there"):
        TaggingDataModule(train_file=str(target), treebank="UD_Toy")
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_missing_file_without_treebank_names_the_keys(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--data.treebank.*--data.train_file"):
        TaggingDataModule(train_file=str(tmp_path / "nope.conllu"))
