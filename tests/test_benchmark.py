"""scripts/benchmark.py runs end to end (on a tiny model; the real figures come from running it by hand)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parents[1] / "scripts" / "benchmark.py"


def test_benchmark_prints_the_table_and_ratios(tiny_bert, toy_treebank):
    result = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "compare",
            "--train_file",
            toy_treebank["train"],
            "--dev_file",
            toy_treebank["dev"],
            "--model",
            tiny_bert,
            "--subset",
            "40",
            "--threads",
            "1",
            "--learning_rate",
            "1e-3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("fit: transformers Trainer", "fit: nasty-train", "tag: pipeline", "tag: nasty-train"):
        assert re.search(rf"\| {row} \| [\d,]+ \| [\d.]+ \| [\d,]+ \| 0\.\d{{4}} \|", result.stdout), row
    for ratio in ("fit words/s ratio", "fit peak RSS ratio", "tag words/s ratio"):
        assert re.search(rf"{ratio} \(ours / \w+\): \d+\.\d\d", result.stdout), ratio
    # both taggers use the same model, so they must agree on every word
    accuracies = re.findall(r"\| tag: [\w-]+ \| [\d,]+ \| [\d.]+ \| [\d,]+ \| (0\.\d{4}) \|", result.stdout)
    assert len(accuracies) == 2 and accuracies[0] == accuracies[1]


def test_ner_benchmark_scores_both_recipes_alike(tiny_bert, tmp_path):
    from test_ner import toy_ner, write_iob2

    data = write_iob2(tmp_path / "all.iob2", toy_ner(60, seed=0))
    config = tmp_path / "ner_tiny.yaml"
    config.write_text(
        f"model:\n  model_name: {tiny_bert}\n  learning_rate: 3.0e-3\ntrainer:\n  max_epochs: 2\n"
        "data:\n  label_column: ner\n  batch_size: 8\nvalidation:\n  every_n_steps: 0\n"
    )
    result = subprocess.run(
        [sys.executable, SCRIPT, "ner", "--data_file", data, "--train_sentences", "45", "--recipe", config,
         "--variants", '["--model.casing true"]', "--seeds", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sentences 1-45 train, the rest dev" in result.stdout
    rows = ["Trainer, guide defaults", "Trainer, ner_tiny.yaml's settings (2 epochs, lr 0.003"]
    for row in [*rows, "nasty-train ner_tiny.yaml", "nasty-train ner_tiny.yaml --model.casing true"]:
        assert re.search(
            rf"\| {re.escape(row)}[^|]* \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \|", result.stdout
        ), row
    assert re.search(r"nasty-train - Trainer at the same settings, mean F1: [+-]\d\.\d{4}", result.stdout)
