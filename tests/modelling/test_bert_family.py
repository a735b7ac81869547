"""The plain-PyTorch BERT family computes what transformers computes, and tagging uses it without importing
transformers' modelling code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clirun import tag_in_fresh_process
from conftest import V1_MODEL
from transformers import (
    AutoModelForTokenClassification,
    BertConfig,
    DistilBertConfig,
    PreTrainedModel,
    RobertaConfig,
    XLMRobertaConfig,
)

from nasty_lightning import Tagger
from nasty_lightning.data.packing import block_mask, position_offset
from nasty_lightning.modelling import bert_family

V1 = V1_MODEL
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=100, **SIZE),
    "bert gelu_new": lambda: BertConfig(vocab_size=100, hidden_act="gelu_new", **SIZE),
    "roberta": lambda: RobertaConfig(vocab_size=100, max_position_embeddings=514, pad_token_id=1, **SIZE),
    "xlm-roberta": lambda: XLMRobertaConfig(
        vocab_size=100, max_position_embeddings=514, pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5, **SIZE
    ),
    "distilbert": lambda: DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "distilbert sinusoidal": lambda: DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, sinusoidal_pos_embds=True
    ),
}


def _saved(config, path: Path) -> PreTrainedModel:
    """A random token classifier of ``config`` with 5 labels, saved in ``path`` and loaded back by transformers."""
    torch.manual_seed(0)
    config.num_labels = 5
    AutoModelForTokenClassification.from_config(config).save_pretrained(path)
    return AutoModelForTokenClassification.from_pretrained(path).eval()


def _padded_batch(pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(3, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, pad), mask


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_and_hidden_states_equal_transformers(name, tmp_path):
    reference = _saved(CONFIGS[name](), tmp_path)
    model = bert_family.load(tmp_path)
    assert isinstance(model, bert_family.TokenClassifier)
    ids, mask = _padded_batch(reference.config.pad_token_id or 0)
    real = mask.bool()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        embeds = reference.get_input_embeddings()(ids) + torch.randn(32)  # as the casing embedding adds to them
        expected_embeds = reference(inputs_embeds=embeds, attention_mask=mask).logits
        got_embeds = model(inputs_embeds=embeds, attention_mask=mask).logits
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.hidden_states[-1][real], expected.hidden_states[-1][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_embeds[real], expected_embeds[real], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got_embeds[real], got.logits[real])  # the embeddings given were used
    assert model.config.id2label == reference.config.id2label


@pytest.mark.parametrize("name", CONFIGS)
def test_a_packed_row_computes_what_separate_rows_do(name, tmp_path):
    """Sentences share a row as ``fit`` packs them (``packing``), each with its own positions and attention."""
    reference = _saved(CONFIGS[name](), tmp_path)
    model = bert_family.load(tmp_path)
    ids, mask = _padded_batch(reference.config.pad_token_id or 0)
    lengths = mask.sum(1).tolist()  # 9, 6 and 3 subwords
    packed_ids = torch.cat([ids[0], ids[1, :6], ids[2, :3], ids[2, :3]])[None]  # the last row twice
    segments = torch.tensor([[0] * 9 + [1] * 6 + [2] * 3 + [3] * 3])
    positions = torch.tensor([list(range(9)) + list(range(6)) + list(range(3)) * 2]) + position_offset(model)
    with torch.no_grad():
        separate = reference(input_ids=ids, attention_mask=mask).logits
        packed = model(input_ids=packed_ids, attention_mask=block_mask(segments), position_ids=positions).logits[0]
    expected = torch.cat([separate[r, :n] for r, n in enumerate(lengths)] + [separate[2, :3]])
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "electra"},
        {"position_embedding_type": "relative_key"},
        {"hidden_act": "silu"},
        {"is_decoder": True},
        {"num_attention_heads": 3},
        {"id2label": {"0": "A", "2": "B"}},
        {"hidden_size": "32"},
    ],
)
def test_a_configuration_it_does_not_implement_is_left_to_transformers(change, tmp_path):
    _saved(BertConfig(vocab_size=100, **SIZE), tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    assert bert_family.load(tmp_path) is None


def test_weights_that_do_not_fit_are_left_to_transformers(tmp_path):
    _saved(BertConfig(vocab_size=100, **SIZE), tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "intermediate_size": 48}))
    assert bert_family.load(tmp_path) is None
    path.write_text(json.dumps({**json.loads(path.read_text()), "intermediate_size": 64, "vocab_size": 10**12}))
    assert bert_family.load(tmp_path) is None  # refused before anything of that size is allocated
    path.write_text(json.dumps({**json.loads(path.read_text()), "vocab_size": 100}))
    assert bert_family.load(tmp_path) is not None
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    assert bert_family.load(tmp_path) is None


def test_tagger_falls_back_to_transformers_with_the_same_tags(tmp_path):
    words = [["the", "cat", "sat", "on", "the", "mat", "."], ["a", "dog", "barked"]]
    lean = Tagger.load(V1)
    assert isinstance(lean.model, bert_family.TokenClassifier)
    fallback = tmp_path / "model"
    fallback.mkdir()
    for file in V1.iterdir():
        (fallback / file.name).write_bytes(file.read_bytes())
    config = json.loads((V1 / "config.json").read_text())
    (fallback / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_python"}))  # same function
    other = Tagger.load(fallback)
    assert isinstance(other.model, PreTrainedModel)
    assert other.tag(words) == lean.tag(words)


@pytest.mark.slow
def test_tagging_does_not_import_transformers_modelling_code():
    tags, modules = tag_in_fresh_process(V1, "the cat sat .", ("transformers.modeling_utils", "torch._dynamo"))
    assert "'cat'" in tags
    assert modules == []
