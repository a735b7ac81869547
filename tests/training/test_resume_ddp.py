"""Under DDP (2 CPU processes, gloo), a run killed with SIGKILL, or stopped with SIGTERM, and resumed with
``--ckpt_path last`` ends exactly as an uninterrupted run: the same weights, bit for bit, and the same
``metrics.csv``."""

from __future__ import annotations

import signal

import pytest
import torch
from clirun import fit_args, nasty_train

pytestmark = pytest.mark.integration

DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")


def args(model, data, root) -> list[str]:
    # 64 sentences in batches of 3 over 2 ranks: 11 steps an epoch, 22 in all; validation at epoch ends only
    return fit_args(
        model,
        data,
        root,
        "--data.batch_size",
        "3",
        "--trainer.max_epochs",
        "2",
        "--validation.every_n_steps",
        "0",
        "--last_checkpoint.every_n_steps",
        "4",
        *DDP,
    )


def weights(root):
    return torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_killed_or_stopped_ddp_run_resumes_exactly(tiny_bert, toy_treebank, tmp_path):
    uninterrupted, run = tmp_path / "uninterrupted", tmp_path / "killed"
    kill = ("--trainer.callbacks+=faulty.KillAt", "--trainer.callbacks.at_step=6")
    # One after the other: two DDP runs side by side could pick the same free port.
    result = nasty_train(*args(tiny_bert, toy_treebank, uninterrupted), timeout=120)
    killed = nasty_train(*args(tiny_bert, toy_treebank, run), *kill, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr and "gloo" in result.stderr

    # Both ranks SIGKILL themselves before step 6; should rank 1 go first, Lightning's observer of the child
    # SIGKILLs rank 0. Either way the launched process (rank 0) ends by SIGKILL, and it returns only once
    # rank 1, which holds the same output pipes, is gone too.
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = weights(run)
    assert saved["global_step"] == 4  # from --last_checkpoint.every_n_steps, mid-epoch
    assert saved["TaggingDataModule"]["train_position"] == {"epoch": 0, "batches_done": 4}
    assert len(saved["random_state"]["torch"]) == 2  # the dropout generator of each rank
    assert "Epoch 1 completed." not in killed.stdout

    resumed = nasty_train(*args(tiny_bert, toy_treebank, run), "--ckpt_path", "last", timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(run, uninterrupted)

    # SIGTERM to the first process alone, as a scheduler may send it: both stop after the same step, 7.
    term = ("--trainer.callbacks+=faulty.SignalAt", "--trainer.callbacks.at_step=6")
    term += ("--trainer.callbacks.signum=15", "--trainer.callbacks.rank=0")
    stopped = nasty_train(*args(tiny_bert, toy_treebank, tmp_path / "term"), *term, timeout=120)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "nasty-train: interrupted: stopped at step 7 (epoch 1 of 2)" in stopped.stderr
    assert weights(tmp_path / "term")["global_step"] == 7
    resumed = nasty_train(*args(tiny_bert, toy_treebank, tmp_path / "term"), "--ckpt_path", "last", timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(tmp_path / "term", uninterrupted)


def assert_same_run(run, uninterrupted):
    expected, got = weights(uninterrupted), weights(run)
    assert got["global_step"] == expected["global_step"] == 22
    for name, tensor in expected["state_dict"].items():  # same batches, same dropout on each rank
        assert torch.equal(got["state_dict"][name], tensor), name
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    assert (run / "metrics.csv").read_text() == (uninterrupted / "metrics.csv").read_text()
