"""``fit --help`` and a misspelt trainer option, answered before Lightning is imported once a fit's parser was built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from nasty_lightning.commands.cli import main
try:
    main({args!r})
except SystemExit as exit:
    print("exit", exit.code, "lightning imported:", "lightning" in sys.modules)
"""


def run(*args: str, home) -> subprocess.CompletedProcess:
    """``nasty-train ARGS`` in a fresh process whose home (and so cache) is ``home``."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"} | {"HOME": str(home)}
    command = [sys.executable, "-c", SCRIPT.format(args=list(args))]
    return subprocess.run(command, capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_fit_help_and_a_misspelt_option_are_answered_without_importing_lightning(tmp_path):
    first = run("fit", "--help", home=tmp_path)  # builds the parser: remembers its help and options
    assert first.stdout.rstrip().endswith("exit 0 lightning imported: True")
    again = run("fit", "--help", home=tmp_path)
    assert again.stdout.rstrip().endswith("exit 0 lightning imported: False")
    assert again.stdout == first.stdout.replace("imported: True", "imported: False")  # the same help
    typo = run("fit", "--epochs", "2", "--data.batch_sise", "3", home=tmp_path)
    assert typo.stdout.strip() == "exit 2 lightning imported: False"
    assert typo.stderr == (
        "nasty-train fit: error: unknown option --data.batch_sise, did you mean --data.batch_size or "
        "--data.eval_batch_size? (nasty-train fit --help lists every option)\n"
    )


@pytest.mark.slow
def test_what_is_not_known_early_goes_on_to_the_parser(tmp_path):
    run("fit", "--help", home=tmp_path)
    # options of a class given on the command line are the parser's to judge; a bad value too
    below = run("fit", "--trainer.callbacks+=nothing.Here", "--trainer.callbacks.at_step", "3", home=tmp_path)
    assert "lightning imported: True" in below.stdout and "--trainer.callbacks" in below.stderr
    value = run("fit", "--data.batch_size", "x", home=tmp_path)
    assert "lightning imported: True" in value.stdout
    assert value.stderr.strip().endswith(
        "--data.batch_size: Expected a <class 'int'>. Got value: x (nasty-train fit --help lists every option)"
    )
