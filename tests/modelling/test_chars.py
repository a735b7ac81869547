"""The character network: it changes nothing until trained, and an encoder learns from it what subwords hide."""

from __future__ import annotations

import json
import random

import pytest
import torch
from clirun import accuracy_off_and_on
from toy_data import write_conllu

from nasty_lightning.data.batching import collate
from nasty_lightning.data.encoding import encode, load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import CHARS_FILE, CHARS_META, META_FILE
from nasty_lightning.inference.quantize import quantize
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.training.module import TokenTagger

# Characters the tiny tokenizers do not know: every word is [UNK] to the encoder, and its tag is its last character.
ENDINGS = {"日": "NOUN", "月": "VERB", "火": "ADJ"}


def by_last_character(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    words = [[rng.choice("水木金土山川") for _ in range(rng.randint(1, 3))] for _ in range(4 * n)]
    return [
        [
            ("".join(rng.choice(words)) + end, tag)
            for end, tag in rng.choices(list(ENDINGS.items()), k=rng.randint(3, 7))
        ]
        for _ in range(n)
    ]


def test_a_new_character_network_changes_nothing_until_trained(tiny_bert):
    labels = ["NOUN", "VERB"]
    plain = TokenTagger(str(tiny_bert), labels=labels).eval()
    spelled = TokenTagger(str(tiny_bert), labels=labels, chars=True).eval()
    spelled.model.load_state_dict(plain.model.state_dict())
    batch = collate(encode([["Zürich", "postmanbarked", "3.14"], ["a"]], load_tokenizer(str(tiny_bert)), 64), 0)
    assert batch.chars.any()
    with torch.no_grad():
        assert torch.allclose(plain(batch)[0], spelled(batch)[0], atol=1e-6)


def test_sentence_labels_take_no_character_network(tiny_bert):
    with pytest.raises(UserError, match="--model.chars needs a first column that labels words"):
        TokenTagger(str(tiny_bert), labels={"genre": ["news", "blog"]}, chars=True)


@pytest.mark.slow
@pytest.mark.integration
def test_an_encoder_learns_what_only_the_characters_say(tiny_bert, tmp_path):
    data = {"train": write_conllu(tmp_path / "train.conllu", by_last_character(64, 0)),
            "dev": write_conllu(tmp_path / "dev.conllu", by_last_character(17, 1))}  # fmt: skip
    accuracy = accuracy_off_and_on(tiny_bert, data, tmp_path, "chars")
    # Every word is one unknown token: without its characters, a guess among three tags
    assert accuracy["false"] < 0.5 and accuracy["true"] > 0.95, accuracy

    model_dir = tmp_path / "chars-true" / "model"
    assert (model_dir / CHARS_FILE).is_file()
    assert json.loads((model_dir / META_FILE).read_text())["chars"] == CHARS_META
    card = " ".join((model_dir / "README.md").read_text().split())
    assert "read a network of each word's characters (`chars.safetensors`), which only `Tagger` computes" in card
    probe = [["水日", "山川月", "土火", "金木水土山日"]]
    tagged = Tagger.load(model_dir).tag(probe)[0]
    assert [t for _, t in tagged] == ["NOUN", "VERB", "ADJ", "NOUN"]

    # quantize: the ONNX graph takes the character ids too, and a graph that does not fit the metadata is refused
    int8 = tmp_path / "int8"
    record = quantize(str(model_dir), str(data["dev"]), str(int8), threads=1)
    assert record["int8"]["accuracy"]["upos"] > 0.95
    assert Tagger.load(int8).tag(probe) == [tagged]
    meta = json.loads((int8 / META_FILE).read_text())
    (int8 / META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != "chars"}))
    with pytest.raises(UserError, match="takes character ids, but .* does not read characters"):
        Tagger.load(int8)

    meta = json.loads((model_dir / META_FILE).read_text())
    meta["chars"] = {**CHARS_META, "length": 32}
    (model_dir / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="reads characters otherwise"):
        Tagger.load(model_dir)
