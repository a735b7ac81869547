"""Faults: a diverging run stops cleanly; a checkpoint write that dies leaves the old file whole."""

from __future__ import annotations

import pytest
import torch

from nasty_lightning.commands.cli import main
from nasty_lightning.training import checkpoint_io
from nasty_lightning.training.checkpoint_io import AtomicCheckpointIO


def test_diverging_loss_stops_and_keeps_the_good_checkpoints(tiny_bert, toy_treebank, tmp_path, capsys):
    args = [
        "fit",
        "--model.model_name",
        str(tiny_bert),
        "--data.train_file",
        str(toy_treebank["train"]),
        "--data.val_file",
        str(toy_treebank["dev"]),
        "--data.batch_size",
        "8",
        "--trainer.max_epochs",
        "3",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks+=faulty.PoisonWeights",
        "--trainer.callbacks.at_step=10",
    ]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "nasty-train: error: the training loss became nan at step 10 (epoch 2)" in err, err[-2000:]
    assert "Traceback" not in err
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "epoch=0.ckpt", "last.ckpt"]
    for ckpt in checkpoints.iterdir():  # saved at the end of epoch 1 (8 steps), before the NaN
        saved = torch.load(ckpt, weights_only=True)
        assert saved["global_step"] == 8
        assert all(torch.isfinite(w).all() for w in saved["state_dict"].values() if w.is_floating_point())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}

    def dies_halfway(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as if the process were stopped in the middle of the write

    monkeypatch.setattr(checkpoint_io.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
