"""Ablations: what each choice of a recipe is worth on EWT dev, over seeds, with its cost in training and tagging time.

    python scripts/ablation.py --out runs/ablation --seeds [42,43,44]

Every arm is ``nasty-train fit`` with a config and options (by default ``configs/pos_minilm.yaml`` at today's
defaults, then with each choice alone added to it, then ``configs/pos_minilm_best.yaml``), run for every seed one
after the other. Each run is timed
whole (wall time and peak memory of the ``fit`` process), its exported model tags the dev file and the UD scorer
(``udeval``, from udtools) scores it: UPOS, XPOS, UFeats, AllTags and Lemmas, those the model predicts. Then every
model tags the dev file in-process, in interleaved rounds (the fastest counts). The table gives the mean over
seeds, and each arm's difference from the first. A run already in ``out`` (its ``result.json``) is read, not run
again, so an interrupted ablation goes on where it stopped; the tagging times are always measured again, together.
With ``--jobs 2`` two runs train at a time, each on half the CPU's threads (``OMP_NUM_THREADS``): their times
compare with each other, not with runs made alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jsonargparse import auto_cli

BIN = Path(sys.executable).parent
POS = "configs/pos_minilm.yaml"
EMA = ["--trainer.callbacks+=nasty_lightning.training.callbacks.EMA", "--trainer.callbacks.decay", "0.999"]
ARMS = {  # the guide's config at today's defaults, then each choice alone on it, and the best recipe
    "pos_minilm.yaml": ["--config", POS],
    "+ casing": ["--config", POS, "--model.casing", "true"],
    "+ layer mix": ["--config", POS, "--model.layer_mix", "true"],
    "+ weight averaging (EMA 0.999)": ["--config", POS, *EMA],
    "+ label smoothing 0.1": ["--config", POS, "--model.label_smoothing", "0.1"],
    "+ layer decay 0.9": ["--config", POS, "--model.layer_decay", "0.9"],
    "+ 6 epochs at lr 5e-5": ["--config", POS, "--trainer.max_epochs", "6", "--model.learning_rate", "5e-5"],
    "pos_minilm_best.yaml": ["--config", "configs/pos_minilm_best.yaml"],
    # added after the others: a run's folder is its arm's number, which a partial ablation reads back
    "+ character network": ["--config", POS, "--model.chars", "true"],
}
SCORES = ("UPOS", "XPOS", "UFeats", "AllTags", "Lemmas")
METRIC = {"upos": "UPOS", "xpos": "XPOS", "feats": "UFeats", "lemma": "Lemmas"}  # the UD scorer's, by column


def predicted(model_dir: Path) -> set[str]:
    """The UD scorer's metrics of the columns a model predicts (the others score the gold file against itself)."""
    meta = json.loads((model_dir / "nasty_lightning.json").read_text())
    columns = [meta["label_column"], *(h["column"] for h in meta.get("heads", []))]
    tags = [c for c in columns if c in ("upos", "xpos", "feats")]
    return {METRIC[c] for c in columns if c in METRIC} | ({"AllTags"} if len(tags) >= 2 else set())


def udeval(gold: str, system: Path) -> dict[str, float]:
    """The UD scorer's accuracies (percent) of a tagged file, by metric."""
    out = subprocess.run([BIN / "udeval", "-v", gold, system], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4 and "AligndAcc" not in line]
    return {r[0].strip(): float(r[4]) for r in rows if r[4].strip()}


def timed(command: list, log: Path, env: dict | None) -> tuple[float, float]:
    """Run ``command`` (output to ``log``); its wall time in seconds and its peak memory in GiB."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{command[0]} failed: see {log}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20


def run_arm(options: list[str], run: Path, train_file: str, dev_file: str, seed: int, env: dict | None) -> dict:
    """Fit one arm with one seed in ``run`` (``env``: its environment), score its model on ``dev_file``; the result,
    also in result.json."""
    saved = run / "result.json"
    if saved.is_file():
        result = json.loads(saved.read_text())
        return result | {"udeval": {k: v for k, v in result["udeval"].items() if k in predicted(run / "model")}}
    fit = [BIN / "nasty-train", "fit", *options, "--data.train_file", train_file, "--data.val_file", dev_file]
    fit += ["--seed_everything", seed, "--trainer.default_root_dir", run, "--overwrite", "true"]
    fit += ["--progress.lines", "true", "--epoch_checkpoint.every_n_epochs", "0"]
    run.mkdir(parents=True, exist_ok=True)
    seconds, peak = timed(fit, run / "fit.log", env)
    tagged = run / "dev.conllu"
    subprocess.run([BIN / "nasty-train", "tag", "--model_dir", run / "model", "--input", dev_file, "--output", tagged],
                   check=True, capture_output=True, env=env)  # fmt: skip
    scores = {k: v for k, v in udeval(dev_file, tagged).items() if k in predicted(run / "model")}
    result = {"fit_seconds": seconds, "peak_gib": peak, "udeval": scores}
    saved.write_text(json.dumps(result, indent=2) + "\n")
    return result


def tag_seconds(model_dir: Path, sentences: list[list[str]]) -> float:
    from nasty_lightning import Tagger

    tagger = Tagger.load(model_dir)
    tagger.predict(sentences[:64])  # warm-up
    start = time.perf_counter()
    tagger.predict(sentences)
    return time.perf_counter() - start


def main(
    out: str = "runs/ablation",
    arms: dict[str, list[str]] | None = None,
    seeds: list[int] = [42],  # noqa: B006 (jsonargparse reads the default)
    train_file: str = "data/ud/en_ewt/en_ewt-ud-train.conllu",
    dev_file: str = "data/ud/en_ewt/en_ewt-ud-dev.conllu",
    rounds: int = 2,
    jobs: int = 1,
) -> dict[str, list[dict]]:
    """Run every arm for every seed, time tagging, print the table.

    Args:
        out: Folder for the runs (``<out>/<arm number>/<seed>``) and results.json.
        arms: Name and ``nasty-train fit`` options (a config first) of each arm; the first is the one the others
            are compared with. Default: ``configs/pos_minilm.yaml``, then each choice added to it alone, then
            ``configs/pos_minilm_best.yaml`` (``ARMS``).
        seeds: Seeds of every arm (``--seed_everything``).
        train_file: Training file (EWT train).
        dev_file: Validation and scoring file (EWT dev).
        rounds: Tagging rounds per model, interleaved; the fastest counts (0: no tagging times).
        jobs: Runs that train at the same time, each on the CPU's threads divided by ``jobs``.
    """
    from nasty_lightning.formats.conllu import read_sentences

    arms = arms or ARMS
    root = Path(out)
    results: dict[str, list[dict]] = {name: [] for name in arms}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = os.environ | {"OMP_NUM_THREADS": str(threads)} if jobs > 1 else None

    def run(a: int, name: str, seed: int) -> dict:
        result = run_arm(arms[name], root / str(a) / str(seed), train_file, dev_file, seed, env)
        scores = result["udeval"]
        print(f"{name}, seed {seed}: " + ", ".join(f"{m} {scores[m]}" for m in SCORES if m in scores), flush=True)
        return result

    # seeds outermost: a partial ablation has every arm for the first seeds
    runs = [(a, name, seed) for seed in seeds for a, name in enumerate(arms)]
    with ThreadPoolExecutor(jobs) as pool:
        for (_, name, _), result in zip(runs, pool.map(lambda r: run(*r), runs), strict=True):
            results[name].append(result)
    sentences = [s.words for s in read_sentences(dev_file)]
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for a, name in enumerate(arms):
            times[name].append(tag_seconds(root / str(a) / str(seeds[0]) / "model", sentences))
    (root / "results.json").write_text(json.dumps({"runs": results, "tag_seconds": times}, indent=2) + "\n")

    def mean(name: str, key: str) -> float:
        return statistics.mean(r["udeval"].get(key, float("nan")) for r in results[name])

    first = next(iter(arms))
    shown = [m for m in SCORES if any(m in r["udeval"] for r in results[first])]
    header = [f"arm ({len(seeds)} seeds)", *shown, "UPOS gain", "fit (s)", "peak (GiB)", "tag dev (s)"]
    print("\n| " + " | ".join(header) + " |")
    print("|---|" + "---|" * (len(shown) + 4))
    for name in arms:
        cells = [f"{mean(name, m):.2f}" for m in shown]
        fit = statistics.mean(r["fit_seconds"] for r in results[name])
        peak = max(r["peak_gib"] for r in results[name])
        tag = f"{min(times[name]):.2f}" if times[name] else ""
        gain = f"{mean(name, 'UPOS') - mean(first, 'UPOS'):+.2f}" if name != first else ""
        print(f"| {name} | " + " | ".join(cells) + f" | {gain} | {fit:.0f} | {peak:.2f} | {tag} |")
    return results


if __name__ == "__main__":
    auto_cli(main, as_positional=False)
