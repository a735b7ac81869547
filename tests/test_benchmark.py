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
