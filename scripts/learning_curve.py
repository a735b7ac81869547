"""Few-shot learning curves: dev accuracy after training on N sampled sentences, for several recipes and seeds.

    python scripts/learning_curve.py --out runs/curve --sizes [100,250,500] --seeds [1,2,3]

Every arm is ``nasty-train fit`` with a config and options, on the same ``--data.max_train_sentences`` sample
for a given seed (the seed draws the sample and initialises the heads). Validation runs once, after the last
epoch, for every arm alike (validating a 100-sentence run after each epoch on 2,001 dev sentences would cost
more than its training), and no arm keeps a checkpoint of every epoch; the table gives the mean and the spread
over seeds of that last validation.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

from jsonargparse import auto_cli

BIN = Path(sys.executable).parent
ARMS = {
    "guide: 10 epochs, lr 1e-5": [
        "--config",
        "configs/pos_minilm.yaml",
        "--trainer.max_epochs",
        "10",
        "--model.learning_rate",
        "1e-5",
    ],
    "fewshot_minilm.yaml": ["--config", "configs/fewshot_minilm.yaml"],
    "fewshot_minilm.yaml, augment 1": ["--config", "configs/fewshot_minilm.yaml", "--data.augment", "1"],
}


def _max_epochs(options: list[str]) -> int:
    """The arm's epochs: the last ``--trainer.max_epochs``, else its config's."""
    if "--trainer.max_epochs" in options:
        return int(options[len(options) - 1 - options[::-1].index("--trainer.max_epochs") + 1])
    config = Path(options[options.index("--config") + 1]).read_text()
    return int(config.split("max_epochs:")[1].split()[0])


def _last_val_acc(run: Path) -> float:
    with open(run / "metrics.csv") as f:
        return [float(r["val_acc"]) for r in csv.DictReader(f) if r.get("val_acc")][-1]


def learning_curve(
    out: str = "runs/curve",
    sizes: list[int] = [100, 250, 500],  # noqa: B006 (jsonargparse reads the default)
    seeds: list[int] = [1, 2, 3],  # noqa: B006
    arms: dict[str, list[str]] | None = None,
    train_file: str = "data/ud/en_ewt/en_ewt-ud-train.conllu",
    val_file: str = "data/ud/en_ewt/en_ewt-ud-dev.conllu",
) -> dict[str, dict[int, list[float]]]:
    """
    Args:
        out: Folder for the runs (``<out>/<arm number>/<size>/<seed>``); a run already there is read, not rerun.
        sizes: Training sentences drawn from ``train_file``.
        seeds: Seeds (of the sample, the heads and the batch order).
        arms: Name and ``nasty-train fit`` options of each recipe; default: the guide's few-shot settings,
            ``configs/fewshot_minilm.yaml``, and it with augmentation.
        train_file: Where the sentences are drawn from.
        val_file: Scored after the last epoch.
    """
    arms = arms or ARMS
    results: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in arms}
    for seed in seeds:  # seeds outermost: a partial run still has every arm and size for the first seeds
        for n in sizes:
            for a, (name, options) in enumerate(arms.items()):
                run = Path(out) / str(a) / str(n) / str(seed)
                if not (run / "model").is_dir():
                    epochs = _max_epochs(options)
                    command = [
                        BIN / "nasty-train", "fit", *options, "--data.train_file", train_file,
                        "--data.val_file", val_file, "--data.max_train_sentences", str(n),
                        "--seed_everything", str(seed), "--trainer.default_root_dir", str(run),
                        "--validation.every_n_steps", "0", "--trainer.check_val_every_n_epoch", str(epochs),
                        "--progress.every_n_steps", "1000", "--epoch_checkpoint.every_n_epochs", "0",
                    ]  # fmt: skip
                    subprocess.run(command, check=True, capture_output=True)
                results[name][n].append(_last_val_acc(run))
                print(f"{name} | {n} sentences | seed {seed}: {results[name][n][-1]:.4f}", flush=True)
    print("\n| recipe | " + " | ".join(f"{n} sentences" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, by_size in results.items():
        cells = [
            f"{100 * statistics.mean(v):.2f} ± {100 * statistics.pstdev(v):.2f}" if v else "" for v in by_size.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return results


if __name__ == "__main__":
    auto_cli(learning_curve, as_positional=False)
