"""The label schema: one serialisation, and readers of every form checkpoints and model directories have held."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FIXTURES, V1_MODEL

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import read_meta
from nasty_lightning.labels.heads import Head, LabelSchema, LabelVocab
from nasty_lightning.modelling import bert_family

V2 = FIXTURES / "v2_heads"
UPOS = ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]


def test_the_schema_round_trips_through_its_serialisation():
    labels = {"upos": UPOS, "lemma": ['["keep",0,"",0,""]'], "ner": ["B-LOC", "I-LOC", "O"]}
    schema = LabelSchema.from_dict(labels)
    assert schema.columns == ["upos", "lemma", "ner"] and len(schema) == 3 and schema[0].column == "upos"
    assert [h.kind for h in schema] == ["tags", "lemma", "entities"]
    assert schema.to_dict() == labels and LabelSchema.from_dict(schema.to_dict()) == schema
    assert json.loads(json.dumps(schema.to_dict())) == labels  # plain JSON: checkpoints load it weights_only
    assert schema.checkpoint_labels() == labels
    assert schema.meta_heads() == {
        "heads": [{"column": "lemma", "labels": labels["lemma"]}, {"column": "ner", "labels": labels["ner"]}]
    }


def test_one_column_is_a_plain_list_in_checkpoints_and_has_no_heads_entry():
    schema = LabelSchema.of(UPOS, ["upos"])
    assert schema == LabelSchema((Head("upos", LabelVocab(tuple(UPOS))),))
    assert schema.checkpoint_labels() == UPOS and schema.to_dict() == {"upos": UPOS} and schema.meta_heads() == {}


@pytest.mark.parametrize(
    ("labels", "columns", "expected"),
    [
        (UPOS, None, {"": UPOS}),  # the model given one list: a nameless column
        ({"": UPOS}, None, {"": UPOS}),
        (UPOS, ["upos"], {"upos": UPOS}),
        ({"upos": UPOS}, ["upos"], {"upos": UPOS}),
        ({"upos": UPOS, "xpos": ["NN"]}, ["upos", "xpos"], {"upos": UPOS, "xpos": ["NN"]}),
    ],
)
def test_every_form_labels_are_given_in_is_read(labels, columns, expected):
    assert LabelSchema.of(labels, columns).to_dict() == expected


def test_labels_that_do_not_fit_the_columns_are_refused():
    with pytest.raises(UserError, match=r"one list of labels given for 2 columns \(upos, xpos\)"):
        LabelSchema.of(UPOS, ["upos", "xpos"])
    with pytest.raises(UserError, match="labels are given for the columns xpos, upos, not for upos, xpos"):
        LabelSchema.of({"xpos": ["NN"], "upos": UPOS}, ["upos", "xpos"])


def test_checkpoints_of_every_version_are_read():
    v1 = torch.load(FIXTURES / "v1_upos" / "best.ckpt", weights_only=True)["TaggingDataModule"]
    assert v1["labels"] == UPOS and v1["label_column"] == "upos"  # a list beside one column's name
    assert LabelSchema.from_checkpoint(v1).to_dict() == {"upos": UPOS}
    v2 = torch.load(V2 / "best.ckpt", weights_only=True)["TaggingDataModule"]
    schema = LabelSchema.from_checkpoint(v2)
    assert schema.columns == v2["label_column"] == ["upos", "xpos", "feats", "lemma", "ner"]
    assert schema.checkpoint_labels() == v2["labels"]  # written back as it was read


@pytest.mark.parametrize("folder", [V1_MODEL, V2 / "model"])
def test_model_directories_of_every_version_are_read_and_written_back_alike(folder):
    meta = read_meta(folder)
    config = bert_family.read_config_file(folder)
    schema = LabelSchema.from_model_dir(config, meta, folder)
    assert schema.columns[0] == meta["label_column"] and list(schema[0].vocab.labels) == list(config.id2label.values())
    assert schema.meta_heads() == {k: v for k, v in meta.items() if k == "heads"}


def test_a_model_directory_naming_a_column_twice_is_refused():
    config = bert_family.read_config_file(V1_MODEL)
    meta = {"label_column": "upos", "heads": [{"column": "upos", "labels": ["X"]}]}
    with pytest.raises(UserError, match="nasty_lightning.json names upos more than once"):
        LabelSchema.from_model_dir(config, meta, V1_MODEL)
    meta = {"label_column": "upos", "heads": [{"column": "xpos", "labels": ["has space"]}]}
    with pytest.raises(UserError, match="nasty_lightning.json: the xpos label 'has space' cannot be written"):
        LabelSchema.from_model_dir(config, meta, V1_MODEL)
