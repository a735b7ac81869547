"""Running ``nasty-train`` as a user would: in a subprocess, or in this process where only its error line matters."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nasty_lightning.commands.cli import main

NASTY_TRAIN = str(Path(sys.executable).with_name("nasty-train"))


def nasty_train(
    *args: str, cwd: Path | None = None, timeout: int = 300, input: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run ``nasty-train ARGS``; ``input``, if given, is the raw bytes of its standard input (which may be
    invalid UTF-8: output and errors then come back decoded as UTF-8, bad bytes replaced)."""
    # PYTHONPATH: callbacks of the tests (``faulty``) can be named on the command line.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parent)}
    command = [NASTY_TRAIN, *map(str, args)]
    if input is None:
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    result = subprocess.run(command, capture_output=True, input=input, cwd=cwd, env=env, timeout=timeout)
    result.stdout, result.stderr = (out.decode("utf-8", errors="replace") for out in (result.stdout, result.stderr))
    return result


def tag_in_fresh_process(model_dir: Path, text: str, modules: tuple[str, ...]) -> tuple[str, list[str]]:
    """Tag ``text`` with ``Tagger.load(model_dir)`` in a new interpreter; returns the printed tags and which of
    ``modules`` (or a submodule of one) that process imported."""
    script = (
        "import json, sys\nfrom nasty_lightning import Tagger\n"
        f"print(Tagger.load({str(model_dir)!r}).tag({text!r}))\n"
        f"print(json.dumps([n for n in {modules!r} if any(m == n or m.startswith(n + '.') for m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    tags, imported = out.splitlines()
    return tags, json.loads(imported)


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def printed_metric(output: str, name: str) -> float:
    """A value from the results table that ``validate``/``test`` print."""
    return float(re.search(rf"{name}\s*[│|]\s*([0-9.]+)", output).group(1))


def fit_args(model, data, root, *extra) -> list[str]:
    """``fit`` of a tiny model on the toy treebank (8 batches an epoch); later ``extra`` options win."""
    return [
        str(a)
        for a in (
            "fit",
            "--model.model_name",
            model,
            "--data.train_file",
            data["train"],
            "--data.val_file",
            data["dev"],
            "--model.learning_rate",
            "1e-3",
            "--data.batch_size",
            "8",
            "--trainer.max_epochs",
            "4",
            "--validation.every_n_steps",
            "5",
            "--trainer.default_root_dir",
            root,
            "--trainer.enable_progress_bar",
            "false",
            *extra,
        )
    ]


def accuracy_off_and_on(model, data, root, option: str) -> dict[str, float]:
    """The best validation accuracy of ``fit`` (6 epochs at 3e-3) with ``--model.OPTION`` false and true, by value;
    the runs are ``root/OPTION-false`` and ``root/OPTION-true``."""
    accuracy = {}
    for value in ("false", "true"):
        run = root / f"{option}-{value}"
        args = fit_args(model, data, run, f"--model.{option}", value, "--trainer.max_epochs", "6")
        result = nasty_train(*args, "--model.learning_rate", "3e-3", "--early_stopping.patience", "100")
        assert result.returncode == 0, result.stderr[-3000:]
        accuracy[value] = max(float(r["val_acc"]) for r in metrics(run) if r.get("val_acc"))
    return accuracy


def copy_run(base, tmp_path):
    return Path(shutil.copytree(base, tmp_path / "run"))


def snapshot(folder):
    """Every file under ``folder`` with its content hash and permissions (but the claim, which names its holder)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def fails(args, capsys) -> str:
    """Run ``main(args)``, expect exit status 2 and one line without a traceback, return that line."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("nasty-train: error: ")]
    return line
