"""Packed rows: the same outputs as separate rows, every window once, and a fallback for models that cannot."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
import torch
from conftest import FIXTURES
from transformers import AutoModelForTokenClassification

from nasty_lightning.data import packing
from nasty_lightning.data.batching import collate
from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.data.encoding import IGNORE, Window
from nasty_lightning.data.packing import accepts_packed_rows, block_mask, collate_packed, position_offset
from nasty_lightning.formats.model_dir import WORD_CHARS
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.modelling.casing import casing_embedding
from nasty_lightning.modelling.chars import CharEncoder
from nasty_lightning.modelling.network import Network

LENGTHS = [12, 3, 7, 5, 9, 4, 6, 2]  # packs into 4 rows of 12


def windows(vocab: int, cls: int = 3, sep: int = 4) -> list[Window]:
    """Window k labels every word k, so that its words can be found again in a packed batch."""
    rng = random.Random(0)
    out = []
    for k, n in enumerate(LENGTHS):
        ids = [cls] + [rng.randrange(5, vocab) for _ in range(n - 2)] + [sep]
        starts = list(range(1, n - 1, 2)) or [0]
        chars = [(), *((i, k + 1) for i in ids[1:-1]), ()]  # two character ids per subword, none on specials
        out.append(Window(ids, starts, [k] * len(starts), sentence=k, first_word=0, casing=[0] * len(ids), chars=chars))
    return out


def test_every_window_once_with_its_own_positions():
    batch = collate_packed(windows(100), pad_id=0)
    assert batch.input_ids.shape == (4, 12)  # 48 positions for 48 subwords, against 8 x 12 padded
    segments, found = batch.packing.segments, []
    for row in range(4):
        for segment in segments[row].unique().tolist():
            at = segments[row] == segment
            if segment == -1:
                assert (batch.input_ids[row][at] == 0).all()
                continue
            assert batch.packing.position_ids[row][at].tolist() == list(range(int(at.sum())))
            found.append((batch.input_ids[row][at].tolist(), batch.chars[row][at].tolist()))
    expected = [(w.input_ids, [[*c, *[0] * (WORD_CHARS - len(c))] for c in w.chars]) for w in windows(100)]
    assert sorted(found) == sorted(expected)  # each window's subwords and their characters
    padded = collate(windows(100), pad_id=0)
    assert [padded.chars[i, : len(ids)].tolist() for i, (ids, _) in enumerate(expected)] == [c for _, c in expected]
    labels = batch.labels[batch.labels != IGNORE]
    assert sorted(labels.tolist()) == sorted(label for w in windows(100) for label in w.labels)
    assert batch.labels.shape == (4, 12, 1)  # one head
    assert batch.attention_mask is None and batch.word_mask is None  # packed rows are for training only
    ids, mask, _, positions = batch.encoder_inputs(position_offset=2)
    assert torch.equal(mask, block_mask(segments)) and torch.equal(positions, batch.packing.position_ids + 2)


def test_padding_attends_only_to_padding():
    mask = block_mask(torch.tensor([[0, 0, 1, -1]]))[0, 0]
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, False, True],
    ]


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_roberta", "tiny_xlmr"])
def test_packed_rows_give_the_outputs_of_separate_rows(model_fixture, request):
    path = request.getfixturevalue(model_fixture)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(LENGTHS)).eval()
    batch_windows = windows(model.config.vocab_size)
    padded = collate(batch_windows, pad_id=model.config.pad_token_id or 0)
    packed = collate_packed(batch_windows, pad_id=model.config.pad_token_id or 0)
    with torch.no_grad():
        separate = model(input_ids=padded.input_ids, attention_mask=padded.attention_mask).logits
        together = model(
            input_ids=packed.input_ids,
            attention_mask=block_mask(packed.packing.segments),
            position_ids=packed.packing.position_ids + position_offset(model),
        ).logits
    for k in range(len(LENGTHS)):
        expected, got = separate[padded.labels[..., 0] == k], together[packed.labels[..., 0] == k]
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    assert accepts_packed_rows(model)


def test_models_that_would_mix_sentences_are_detected(tiny_bert, tiny_roberta, monkeypatch):
    eager = AutoModelForTokenClassification.from_pretrained(tiny_bert, num_labels=3, attn_implementation="eager")
    assert not accepts_packed_rows(eager)  # eager attention adds the mask: a boolean one does not block
    roberta = AutoModelForTokenClassification.from_pretrained(tiny_roberta, num_labels=3)
    monkeypatch.setattr(packing, "position_offset", lambda model: 0)  # RoBERTa counts from padding_idx + 1
    assert not accepts_packed_rows(roberta)


def test_training_falls_back_to_padded_rows(tiny_bert, toy_treebank):
    data = TaggingDataModule(
        train_file=str(toy_treebank["train"]), val_file=str(toy_treebank["dev"]), model_name=str(tiny_bert)
    )
    data.setup("fit")
    data.trainer = SimpleNamespace(
        lightning_module=SimpleNamespace(accepts_packed_rows=True), global_rank=0, world_size=1
    )
    assert next(iter(data.train_dataloader())).packing is not None
    assert next(iter(data.val_dataloader())).packing is None  # evaluation batches are sorted, not packed
    data.trainer.lightning_module.accepts_packed_rows = False
    with pytest.warns(UserWarning, match="does not give packed rows the outputs of separate rows"):
        batch = next(iter(data.train_dataloader()))
    assert batch.packing is None and batch.attention_mask is not None


def test_tagging_packs_short_sentences_into_shared_rows_and_tags_each_as_alone(monkeypatch):
    """``Tagger`` with our BERT family: a batch of mixed lengths shares rows, and every tag is the tag of the
    sentence tagged alone (packed rows compute what separate rows do, ``test_bert_family``)."""
    tagger = Tagger.load(FIXTURES / "v1_upos" / "model")
    rng = random.Random(0)
    vocab = ["the", "Cat", "sat", "on", "a", "MAT", ".", "dogs", "Run", "quickly", ",", "and", "it", "rained"]
    sentences = [[rng.choice(vocab) for _ in range(n)] for n in (1, 14, 3, 6, 2, 9, 4, 1, 11, 5)]
    torch.manual_seed(0)
    casing = casing_embedding(tagger.model.config.hidden_size)
    torch.nn.init.normal_(casing.weight)  # a model trained with --model.casing: its vectors join the embeddings
    cased = dataclasses.replace(tagger, casing=casing)
    alone = [tagger.predict([s])["upos"][0] for s in sentences]
    cased_alone = [cased.predict([s])["upos"][0] for s in sentences]
    assert cased_alone != alone  # the casing vectors count
    rows = []
    forward = Network.forward

    def counted(self, input_ids, attention_mask, casing, position_ids=None, chars=None):
        rows.append((input_ids.shape[0], int(attention_mask.dim() == 4)))
        return forward(self, input_ids, attention_mask, casing, position_ids, chars)

    monkeypatch.setattr(Network, "forward", counted)
    assert tagger.predict(sentences)["upos"] == alone
    assert len(rows) == 1 and rows[0][0] < len(sentences) and rows[0][1] == 1, rows  # one pass, shared rows
    assert cased.predict(sentences)["upos"] == cased_alone
    chars = CharEncoder(tagger.model.config.hidden_size)
    torch.nn.init.normal_(chars.out.weight)  # a model trained with --model.chars: each word's spelling counts
    spelled = dataclasses.replace(tagger, chars=chars)
    spelled_alone = [spelled.predict([s])["upos"][0] for s in sentences]
    assert spelled_alone != alone
    assert spelled.predict(sentences)["upos"] == spelled_alone
