"""Missing data files: downloaded from the treebank's repository, or a clear error."""

from __future__ import annotations

import pytest

from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.errors import UserError
from nasty_lightning.formats import fetch


@pytest.fixture
def mirror(tmp_path, monkeypatch, toy_treebank):
    """A local stand-in for the UD repositories, reached through a file:// URL."""
    repo = tmp_path / "mirror" / "UniversalDependencies" / "UD_Toy"
    repo.mkdir(parents=True)
    (repo / "xx_toy-ud-train.conllu").write_bytes(toy_treebank["train"].read_bytes())
    ner = tmp_path / "mirror" / "UniversalNER" / "UNER_Toy"
    ner.mkdir(parents=True)
    (ner / "xx_toy-ud-dev.iob2").write_text("1\tAnn\tB-PER\t-\t-\n2\tsat\tO\t-\t-\n\n")
    monkeypatch.setattr(fetch, "RAW", f"file://{tmp_path}/mirror/{{repository}}/{{file}}")
    return repo


def test_missing_training_file_is_downloaded(mirror, tmp_path):
    target = tmp_path / "data" / "xx_toy-ud-train.conllu"
    data = TaggingDataModule(train_file=str(target), treebank="UD_Toy")
    assert target.read_bytes() == (mirror / "xx_toy-ud-train.conllu").read_bytes()
    assert data.label_vocab == ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]


def test_failed_download_says_where_to_put_the_file(mirror, tmp_path):
    target = tmp_path / "data" / "xx_toy-ud-dev.conllu"
    with pytest.raises(UserError, match="could not be downloaded.*Put the file there"):
        TaggingDataModule(train_file=str(target), treebank="UD_Toy")
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_missing_file_without_treebank_names_the_keys(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--data.treebank.*--data.train_file"):
        TaggingDataModule(train_file=str(tmp_path / "nope.conllu"))


def test_a_universal_ner_file_is_downloaded_from_its_owners_repository(mirror, tmp_path):
    target = tmp_path / "data" / "xx_toy-ud-dev.iob2"
    fetch.fetch_treebank_file("UniversalNER/UNER_Toy", target)
    assert target.read_text().startswith("1\tAnn\tB-PER")


@pytest.mark.parametrize("typo", ["xx_toy-ud-trian.conllu", "train.conllu", "xx_toy-ud-train.conll"])
def test_a_name_that_is_not_the_treebanks_own_file_is_missing_not_downloaded(mirror, tmp_path, typo):
    target = tmp_path / "data" / typo
    with pytest.raises(UserError, match=f"{typo} does not exist \\(only a treebank's own files"):
        TaggingDataModule(train_file=str(target), treebank="UD_Toy")
    assert not target.parent.exists()  # nothing was asked of the repository
