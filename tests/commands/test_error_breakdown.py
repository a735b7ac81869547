"""scripts/error_breakdown.py: accuracy by group of words (seen in training or not, one subword or several)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from toy_data import write_conllu
from transformers import AutoTokenizer

SCRIPT = Path(__file__).parents[2] / "scripts" / "error_breakdown.py"


def load_script():
    spec = importlib.util.spec_from_file_location("error_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_errors_are_counted_in_every_group_the_word_belongs_to(tiny_bert, tmp_path, capsys):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    letters = sorted(t for t in tokenizer.get_vocab() if len(t) == 1 and t.islower())
    long = "".join(letters[:8])  # spelled from single letters: several subwords in the tiny vocabulary
    assert len(tokenizer.tokenize(long)) > 1 and len(tokenizer.tokenize("a")) == 1
    train = write_conllu(tmp_path / "train.conllu", [[("a", "DET"), ("b", "NOUN"), (".", "PUNCT")]])
    gold = [[("A", "DET"), (long, "NOUN"), ("c", "NOUN"), (".", "PUNCT")], [("b", "NOUN"), ("d", "INTJ")]]
    tagged = [[("A", "DET"), (long, "VERB"), ("c", "NOUN"), (".", "PUNCT")], [("b", "VERB"), ("d", "NOUN")]]
    result = load_script().main(
        train_file=train,
        gold_file=write_conllu(tmp_path / "gold.conllu", gold),
        system_file=write_conllu(tmp_path / "tagged.conllu", tagged),
        model_dir=tiny_bert,
    )
    # seen (lowercased): A . b; unseen: the long word, c, d. Wrong: the long word (unseen, several subwords),
    # b (seen), d (unseen)
    assert result == {
        "all words": (6, 3),
        "seen in training": (3, 1),
        "not seen in training": (3, 2),
        "one subword": (5, 2),
        "several subwords": (1, 1),
    }
    out = capsys.readouterr().out
    assert "upos: 1 of 6 dev words (16.667%) carry a label training never saw" in out  # INTJ
    assert "| not seen in training | 3 | 50.0% | 33.33 | 66.7% |" in out
