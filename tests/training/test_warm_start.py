"""Continuing from an exported model directory (domain adaptation): rows matched by label name, always."""

from __future__ import annotations

import pytest
import torch
from clirun import nasty_train
from conftest import V1_MODEL
from safetensors.torch import load_file
from toy_data import toy_sentences, write_conllu

from nasty_lightning.data.encoding import load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.training.module import TokenTagger

V1 = V1_MODEL


def test_a_label_set_of_the_same_size_with_other_names_keeps_old_rows_by_name(toy_treebank):
    old = Tagger.load(V1)
    words = [s.words for s in read_sentences(toy_treebank["dev"])]
    renamed = ["ADJECTIVE" if t == "ADJ" else t for t in old.labels][::-1]  # same size, one new name, new order
    assert len(renamed) == len(old.labels) and "ADJ" not in renamed
    model = TokenTagger(str(V1), labels=renamed).model
    classifier = old.model.classifier
    for i, tag in enumerate(renamed):
        if tag in old.labels:
            assert torch.equal(model.classifier.weight[i], classifier.weight[old.labels.index(tag)]), tag
        else:  # a new name gets a new row, not the old row that happened to sit at its index
            assert not any(torch.equal(model.classifier.weight[i], w) for w in classifier.weight)
    batch = load_tokenizer(str(V1))(words, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        before, after = old.model.eval()(**batch).logits, model.eval()(**batch).logits
    # every kept label scores every subword as the old model scored it (Tagger's encoder is bert_family's:
    # the same arithmetic as transformers', in another order, so equal to float rounding)
    for i, tag in enumerate(renamed):
        if tag in old.labels:
            assert torch.allclose(after[..., i], before[..., old.labels.index(tag)], atol=1e-6), tag


def test_an_entity_tagger_starts_from_a_upos_model():
    # the NER recipe's first step (README, Named entities): a UPOS model's encoder under a new classifier of tags
    saved = load_file(V1 / "model.safetensors")
    tags = ["B-ORG", "I-ORG", "O"]
    model = TokenTagger(str(V1), labels={"ner": tags}, casing=True)
    assert model.warm_start and model.columns == ["ner"] and model.labels == tags
    state = model.model.state_dict()
    for name, weight in saved.items():
        if not name.startswith("classifier."):
            assert torch.equal(state[name], weight), name
    assert model.model.classifier.weight.shape == (len(tags), saved["classifier.weight"].shape[1])
    assert not model.casing.weight.any()  # the UPOS model has no casing vectors: they start at zero


def test_a_upos_model_goes_on_as_the_upos_head_beside_new_entities():
    # ner_minilm_best.yaml: '[ner, upos]' from a UPOS model; its classifier becomes the UPOS head, row by label
    saved = load_file(V1 / "model.safetensors")
    upos = Tagger.load(V1).labels
    model = TokenTagger(str(V1), labels={"ner": ["B-ORG", "I-ORG", "O"], "upos": upos[::-1]})
    head = model.heads["upos"]
    for i, tag in enumerate(upos[::-1]):
        assert torch.equal(head.weight[i], saved["classifier.weight"][upos.index(tag)]), tag
        assert torch.equal(head.bias[i], saved["classifier.bias"][upos.index(tag)]), tag
    assert model.model.classifier.weight.shape[0] == 3  # the entities' classifier is new


@pytest.mark.slow
@pytest.mark.integration
def test_fit_continues_from_an_exported_model_with_a_new_label(toy_treebank, tmp_path):
    # a new domain: the same toy language, where Zürich is now PROPN, a label the model never saw
    def propn(sentences):
        return [[(w, "PROPN" if w == "Zürich" else t) for w, t in s] for s in sentences]

    data = {
        "train": write_conllu(tmp_path / "train.conllu", propn(toy_sentences(64, seed=0))),
        "dev": write_conllu(tmp_path / "dev.conllu", propn(toy_sentences(17, seed=1))),
    }
    run = tmp_path / "adapted"
    result = nasty_train(
        "fit", "--model.model_name", V1, "--data.train_file", data["train"], "--data.val_file", data["dev"],
        "--trainer.max_epochs", "1", "--model.learning_rate", "1e-12", "--trainer.default_root_dir", run,
        "--validation.every_n_steps", "0", "--data.batch_size", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    adapted = Tagger.load(run / "model")
    assert "PROPN" in adapted.labels and set(Tagger.load(V1).labels) < set(adapted.labels)
    # a learning rate too small to change anything: the old labels' predictions are the old model's
    words = [s.words for s in read_sentences(toy_treebank["dev"])]
    old = Tagger.load(V1).predict(words)["upos"]
    new = adapted.predict(words)["upos"]
    assert sum(o == n for os_, ns in zip(old, new, strict=True) for o, n in zip(os_, ns, strict=True)) >= 0.95 * sum(
        map(len, old)
    )


def test_a_quantized_directory_is_no_starting_point(tmp_path):
    (tmp_path / "nasty_lightning.json").write_text('{"label_column": "upos", "max_length": 512, "quantization": {}}')
    with pytest.raises(UserError, match="is a quantized model: continue from the model directory it was made from"):
        TokenTagger(str(tmp_path), labels=["NOUN"])
