"""Four heads (UPOS, XPOS, FEATS, LEMMA) against UPOS alone: accuracy, the UD scorer's figures, training and
tagging time, on the same machine in one invocation.

    python scripts/benchmark_heads.py --out runs/heads [--train_sentences 2000] [--max_epochs 3]

Trains ``configs/pos_minilm.yaml`` (UPOS; at its defaults, and with the heads' learning rate of the four-head
recipe) and ``configs/ud_minilm.yaml`` (four heads) one after the other at the guide's defaults (optionally
on the first N training sentences), then for each exported model: tags EWT
dev (timed in-process, rounds interleaved, best of them), scores it with ``nasty-train eval`` and with the UD
scorer (``udeval``, from udtools), and prints one table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ablation import tag_seconds, udeval
from jsonargparse import auto_cli
from split_conllu import write_first

BIN = Path(sys.executable).parent
# name: config and options; the baseline at its defaults and with the heads' learning rate of the recipe
RUNS = {
    "upos": ("configs/pos_minilm.yaml", []),
    "upos_head_lr": ("configs/pos_minilm.yaml", ["--model.head_learning_rate", "1e-3"]),
    "four_heads": ("configs/ud_minilm.yaml", []),
}
UDEVAL = {"UPOS": "upos", "XPOS": "xpos", "UFeats": "feats", "AllTags": None, "Lemmas": "lemma"}


def _subset(train_file: str, n: int | None, out: Path) -> str:
    if n is None:
        return train_file
    return str(write_first(train_file, n, out / f"train-first{n}.conllu"))


def main(
    out: str = "runs/heads",
    train_file: str = "data/ud/en_ewt/en_ewt-ud-train.conllu",
    dev_file: str = "data/ud/en_ewt/en_ewt-ud-dev.conllu",
    train_sentences: int | None = None,
    max_epochs: int = 3,
    rounds: int = 3,
) -> None:
    """Train both, tag and score both, print the table.

    Args:
        out: Folder for the runs, tagged files and results.json.
        train_file: Training file (EWT train).
        dev_file: Validation and scoring file (EWT dev).
        train_sentences: Train on the first N sentences only (default: all).
        max_epochs: Epochs of each run (the guide's 3).
        rounds: Tagging rounds per model, interleaved; the fastest counts.
    """
    from nasty_lightning.formats.conllu import read_sentences

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    train = _subset(train_file, train_sentences, root)
    results: dict[str, dict] = {}
    for name, (config, options) in RUNS.items():
        run = root / name
        command = [BIN / "nasty-train", "fit", "--config", config, *options, "--data.train_file", train]
        command += ["--data.val_file", dev_file, "--trainer.max_epochs", str(max_epochs)]
        command += ["--trainer.default_root_dir", run, "--overwrite", "true", "--progress.lines", "true"]
        start = time.perf_counter()
        with open(root / f"{name}.log", "w") as log:
            subprocess.run([str(c) for c in command], stdout=log, stderr=subprocess.STDOUT, check=True)
        results[name] = {"fit_seconds": time.perf_counter() - start}
        tagged = root / f"{name}.dev.conllu"
        subprocess.run(
            [BIN / "nasty-train", "tag", "--model_dir", run / "model", "--input", dev_file, "--output", tagged],
            check=True,
        )
        scores = root / f"{name}.eval.json"
        subprocess.run(
            [
                BIN / "nasty-train",
                "eval",
                "--model_dir",
                run / "model",
                "--test_file",
                dev_file,
                "--output_json",
                scores,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results[name]["eval"] = json.loads(scores.read_text())
        results[name]["udeval"] = udeval(dev_file, tagged)
    sentences = [s.words for s in read_sentences(dev_file)]
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    for _ in range(rounds):
        for name in RUNS:
            times[name].append(tag_seconds(root / name / "model", sentences))
    for name in RUNS:
        results[name]["tag_seconds"] = min(times[name])
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    words = sum(map(len, sentences))
    print(f"| | {' | '.join(RUNS)} |\n|---|{'---|' * len(RUNS)}")
    for metric, column in UDEVAL.items():

        def cell(name: str, metric: str = metric, column: str | None = column) -> str:
            predicted = results[name]["eval"].get("columns") or {"upos": None}  # one column: the UPOS run
            shown = column is None and len(predicted) > 1 or column in predicted
            return f"{results[name]['udeval'][metric]:.2f}" if shown else "not predicted"

        print(f"| udeval {metric} | " + " | ".join(cell(n) for n in RUNS) + " |")
    print("| eval UPOS accuracy | " + " | ".join(f"{100 * results[n]['eval']['accuracy']:.2f}" for n in RUNS) + " |")
    print("| fit wall time (s) | " + " | ".join(f"{results[n]['fit_seconds']:.0f}" for n in RUNS) + " |")
    print("| tag dev in-process (s) | " + " | ".join(f"{results[n]['tag_seconds']:.2f}" for n in RUNS) + " |")
    print("| words/s | " + " | ".join(f"{words / results[n]['tag_seconds']:,.0f}" for n in RUNS) + " |")
    four = results["four_heads"]
    for name in RUNS:
        if name != "four_heads":
            up = results[name]
            print(
                f"four heads / {name}: fit {four['fit_seconds'] / up['fit_seconds']:.3f}x, "
                f"tag {four['tag_seconds'] / up['tag_seconds']:.3f}x, "
                f"UPOS {100 * (four['eval']['accuracy'] - up['eval']['accuracy']):+.2f} points"
            )


if __name__ == "__main__":
    auto_cli(main, as_positional=False)
