"""The README's Python example of fine-tuning, run as it is written there, on a tiny model and the toy treebank."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.inference.tagger import Tagger

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    """The README's code block that fine-tunes with a plain ``lightning.Trainer``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return next(b for b in blocks if "L.Trainer(" in b)


@pytest.mark.slow
def test_the_readmes_fine_tuning_example_runs_as_written(tiny_bert, toy_treebank, tmp_path):
    example = readme_example()
    # the README's data and model, swapped for the toy ones; nothing else of the example changes
    example = example.replace('"minilm"', repr(str(tiny_bert)))
    example = example.replace('"data/ud/en_ewt/en_ewt-ud-train.conllu"', repr(str(toy_treebank["train"])))
    example = example.replace('"data/ud/en_ewt/en_ewt-ud-dev.conllu"', repr(str(toy_treebank["dev"])))
    example = example.replace("learning_rate=3e-5", "learning_rate=1e-3")  # a tiny random model learns faster
    assert example.count(repr(str(tiny_bert))) == 1 and example.count(str(toy_treebank["dev"])) == 1
    script = "import lightning.pytorch; lightning.pytorch.seed_everything(0)\n" + example
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    tagged = eval(result.stdout.strip().splitlines()[-1])  # the example prints Tagger.tag's result
    assert [w for w, _ in tagged[0]] == ["The", "cat", "sat", "on", "the", "mat", "."]
    # it learned: the exported model tags the toy dev file well above its most frequent tag
    sentences = read_sentences(toy_treebank["dev"])
    gold = [t for s in sentences for t in s.labels("upos")]
    predicted = Tagger.load(tmp_path / "runs" / "python" / "model").predict([s.words for s in sentences])["upos"]
    accuracy = sum(g == p for g, p in zip(gold, (t for s in predicted for t in s), strict=True)) / len(gold)
    assert accuracy > max(gold.count(t) for t in set(gold)) / len(gold) + 0.2, accuracy


def test_the_python_api_imports_nothing_heavy_until_used():
    script = "import sys, nasty_lightning; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
