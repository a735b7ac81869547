"""fit at its boundaries: ``--overwrite`` deletes the earlier run only once everything else is checked, and a
checkpoint that cannot be written (a file system that is full) ends in one line that says what is left."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess

import pytest
from clirun import NASTY_TRAIN, copy_run, fails, fit_args, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def earlier(tiny_bert, toy_treebank, tmp_path_factory):
    """A finished run of one epoch: checkpoints, an exported model, logs."""
    from nasty_lightning.commands.cli import main

    root = tmp_path_factory.mktemp("earlier")
    main(fit_args(tiny_bert, toy_treebank, root, "--trainer.max_epochs", "1"))
    assert (root / "model").is_dir() and (root / "checkpoints" / "best.ckpt").is_file()
    return root


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--model.model_name", "{run}/checkpoints/best.ckpt", "is part of the run that --overwrite true deletes"),
        ("--model.model_name", "{run}/model", "is part of the run that --overwrite true deletes"),
        ("--monitor", "nonsense", "--checkpoint.monitor nonsense is not a validation metric of this model"),
        ("--data.train_file", "{run}/missing.conllu", "missing.conllu does not exist"),
        ("--data.val_file", "{run}/missing.conllu", "missing.conllu does not exist"),
        ("--data.max_length", "600", "--data.max_length 600 exceeds the 512 positions"),
    ],
    ids=["own_checkpoint", "own_model", "monitor", "train_file", "val_file", "max_length"],
)
def test_overwrite_deletes_nothing_before_everything_is_checked(
    earlier, tiny_bert, toy_treebank, tmp_path, capsys, option, value, message
):
    run = copy_run(earlier, tmp_path)
    before = snapshot(run)
    line = fails(fit_args(tiny_bert, toy_treebank, run, "--overwrite", "true", option, value.format(run=run)), capsys)
    assert message in line
    assert snapshot(run) == before


def limit_file_size() -> None:
    """In the child: files of at most 350 kB (the tiny model's best.ckpt fits, last.ckpt, with the optimizer
    state, does not), a longer write failing with EFBIG instead of a SIGXFSZ that would kill the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (350_000, 350_000))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real file system of 600 kB (best.ckpt fits, last.ckpt beside it does not), where mounting is allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", folder], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", folder], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("full", ["file_size_limit", "small_tmpfs"])
def test_a_real_failed_write_is_one_line_that_resumes_only_from_a_last_ckpt(tiny_bert, toy_treebank, request, full):
    # torch.save reports a short write as RuntimeError("[enforce fail at inline_container.cc] ... unexpected
    # pos"), the OSError inside; the first limit needs no privileges, the second is a real full disk.
    root = request.getfixturevalue("tmp_path") if full == "file_size_limit" else request.getfixturevalue(full)
    result = subprocess.run(
        [NASTY_TRAIN, *fit_args(tiny_bert, toy_treebank, root)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"},
        preexec_fn=limit_file_size if full == "file_size_limit" else None,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    checkpoints = root / "checkpoints"
    reason = "File too large" if full == "file_size_limit" else "No space left on device"
    assert line.startswith(f"nasty-train: error: cannot write the checkpoint {checkpoints / 'last.ckpt'} ({reason})")
    assert f"the last checkpoint written is {checkpoints / 'best.ckpt'} (step 5)" in line
    assert line.endswith("there is no last.ckpt to resume from: make room and start again with --overwrite true")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt"]  # and no partial file
