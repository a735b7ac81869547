"""A run killed with SIGKILL, or stopped with Ctrl-C or SIGTERM, and resumed with ``--ckpt_path last`` ends
exactly as an uninterrupted run."""

from __future__ import annotations

import signal

import pytest
import torch
from clirun import fit_args, nasty_train

pytestmark = pytest.mark.integration


def args(model, data, root, *extra) -> list[str]:
    return fit_args(model, data, root, "--trainer.max_epochs", "3", "--last_checkpoint.every_n_steps", "3", *extra)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, toy_treebank, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    result = nasty_train(*args(tiny_bert, toy_treebank, root))
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def weights(root):
    return torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop, at, saved_at, position",
    [
        # last.ckpt from --last_checkpoint.every_n_steps, mid-epoch
        (signal.SIGKILL, 13, 12, {"epoch": 1, "batches_done": 4}),
        (signal.SIGKILL, 8, 8, None),  # at the end of the first epoch: last.ckpt from its validation
        # right after a mid-epoch validation that saved best.ckpt and last.ckpt: the resumed run must know
        # that best.ckpt is its own, and replace it (not save best-v1.ckpt beside a stale one)
        (signal.SIGKILL, 5, 5, {"epoch": 0, "batches_done": 5}),
        # Ctrl-C and SIGTERM: the step under way ends, last.ckpt is saved there, and the run stops
        (signal.SIGINT, 13, 14, {"epoch": 1, "batches_done": 6}),
        (signal.SIGTERM, 7, 8, None),  # during the last step of an epoch: saved at the epoch's end
    ],
    ids=["kill-mid-epoch", "kill-epoch-end", "kill-after-validation", "ctrl-c", "sigterm-epoch-end"],
)
def test_stopped_run_resumes_exactly(uninterrupted, tiny_bert, toy_treebank, tmp_path, stop, at, saved_at, position):
    run = args(tiny_bert, toy_treebank, tmp_path)
    if stop == signal.SIGKILL:
        stopped = nasty_train(*run, "--trainer.callbacks+=faulty.KillAt", f"--trainer.callbacks.at_step={at}")
        assert stopped.returncode == -signal.SIGKILL
    else:
        signal_at = ("--trainer.callbacks+=faulty.SignalAt", f"--trainer.callbacks.at_step={at}")
        stopped = nasty_train(*run, *signal_at, f"--trainer.callbacks.signum={int(stop)}")
        assert stopped.returncode == 128 + stop, stopped.stderr[-3000:]
        assert f"nasty-train: interrupted: stopped at step {saved_at} (epoch" in stopped.stderr
        assert "Resume with:\n  nasty-train fit " in stopped.stderr
        assert stopped.stderr.rstrip().endswith("--ckpt_path last") and "Traceback" not in stopped.stderr
    saved = weights(tmp_path)
    assert saved["global_step"] == saved_at
    if position is not None:
        assert saved["TaggingDataModule"]["train_position"] == position
    assert not (tmp_path / "model").exists()  # a stopped run exports nothing

    resumed = nasty_train(*run, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = weights(uninterrupted), weights(tmp_path)
    assert got["global_step"] == expected["global_step"] == 24
    for name, tensor in expected["state_dict"].items():  # same batches, same dropout: the same weights
        assert torch.equal(got["state_dict"][name], tensor), name
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert (
        best["global_step"] == torch.load(uninterrupted / "checkpoints" / "best.ckpt", weights_only=True)["global_step"]
    )
    # The history continues without lost or repeated rows: every logged metric is the uninterrupted run's.
    assert (tmp_path / "metrics.csv").read_text() == (uninterrupted / "metrics.csv").read_text()


@pytest.mark.slow
def test_a_killed_run_with_weight_averaging_resumes_its_average_exactly(tiny_bert, toy_treebank, tmp_path):
    """The moving average (``callbacks.EMA``) and the weights it averages both resume as they were."""
    ema = ("--trainer.callbacks+=nasty_lightning.training.callbacks.EMA", "--trainer.callbacks.decay", "0.9")
    whole = nasty_train(*args(tiny_bert, toy_treebank, tmp_path / "whole", *ema))
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = args(tiny_bert, toy_treebank, tmp_path / "killed", *ema)
    killed = nasty_train(*run, "--trainer.callbacks+=faulty.KillAt", "--trainer.callbacks.at_step=13")
    assert killed.returncode == -signal.SIGKILL
    resumed = nasty_train(*run, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    for key in ("state_dict", "current_model_state", "averaging_state"):  # the average, the weights, its count
        assert expected[key].keys() == got[key].keys()
        for name, tensor in expected[key].items():
            assert torch.equal(got[key][name], tensor), (key, name)
    assert not torch.equal(
        expected["state_dict"]["model.classifier.weight"], expected["current_model_state"]["model.classifier.weight"]
    )
