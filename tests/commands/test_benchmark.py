"""scripts/benchmark.py runs end to end (on a tiny model; the real figures come from running it by hand)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nasty_lightning.modelling.precision import cpu_has_native_bf16

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parents[2] / "scripts" / "benchmark.py"


@pytest.mark.slow
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
    out = result.stdout
    bf16_peak = r"bf16 [\d,]+ GFLOP/s" if cpu_has_native_bf16() else r"bf16 not native \(not measured"
    assert re.search(r"matrix-multiply peak \(2048 x 2048\): float32 [\d,]+ GFLOP/s, " + bf16_peak, out)
    rows = {
        name: float(accuracy)
        for name, accuracy in re.findall(
            r"\| ((?:fit|tag): [^|]+?) \| [\d.]+ \| [\d.]+ \| [\d,]+ \| [\d,]+ \| [\d.]+% \| [\d,]+ \| (0\.\d{4}) \|",
            out,
        )
    }
    expected = {"fit: Trainer (defaults, fp32)", "fit: nasty-train (defaults)"}
    expected |= {"tag: pipeline (defaults)", "tag: pipeline batch_size=64", "tag: nasty-train"}
    if cpu_has_native_bf16():
        expected |= {"fit: Trainer bf16", "fit: Trainer bf16 + group_by_length", "fit: nasty-train 32-true"}
        expected |= {"tag: pipeline batch_size=64 bf16", "tag: nasty-train --precision bf16"}
        assert re.search(r"tag, nasty-train --precision bf16 / pipeline batch_size=64 bf16: whole process \d", out)
    else:  # the Trainer's best settings without native bf16; our defaults are 32-true, so no arm repeats them
        expected.add("fit: Trainer + group_by_length")
        assert re.search(r"fit, ours / Trainer \+ group_by_length: whole process \d+\.\d\dx", out)
    assert set(rows) == expected, out
    for ratio in (r"fit, ours / Trainer \(defaults, fp32\)", "tag, nasty-train / pipeline batch_size=64"):
        assert re.search(rf"{ratio}: whole process \d+\.\d\dx, inner \d+\.\d\dx", out), ratio
    # pipeline and our float32 Tagger tag with the same model, so they must agree on every word
    assert rows["tag: pipeline (defaults)"] == rows["tag: pipeline batch_size=64"] == rows["tag: nasty-train"]


@pytest.mark.slow
def test_ner_benchmark_scores_both_recipes_alike(tiny_bert, tmp_path):
    from toy_data import toy_ner, write_iob2

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
