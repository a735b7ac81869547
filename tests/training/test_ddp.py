"""DDP on CPU (gloo): training completes, and validation is exact (no padded or repeated samples)."""

from __future__ import annotations

import pytest
from clirun import metrics, nasty_train, printed_metric

pytestmark = pytest.mark.integration

DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
# fit's validation and ``validate`` below see different batches (a token budget against 2 sentences); in bf16 a
# batch's shape can turn a near-tie of this tiny model's logits, in float32 it did not
FLOAT32 = ("--model.validation_precision", "float32")


def validate(ckpt, dev, root, *extra) -> float:
    result = nasty_train(
        "validate",
        "--ckpt_path",
        ckpt,
        "--data.val_file",
        dev,
        "--data.eval_batch_size",
        "2",
        "--trainer.default_root_dir",
        root,
        "--trainer.enable_progress_bar",
        "false",
        *FLOAT32,
        *extra,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return printed_metric(result.stdout, "val_acc")


@pytest.mark.slow
@pytest.mark.parametrize(
    "batching",
    [
        ("--data.batch_size", "3", "--data.eval_batch_size", "2"),
        # with the character network: its ids travel in the batches of both ranks
        ("--data.max_length", "64", "--data.max_tokens", "64", "--model.chars", "true"),
    ],
    ids=["sentences", "token-budget-chars"],
)
def test_ddp_fit_and_exact_validation(tiny_bert, toy_treebank, tmp_path, batching):
    root = tmp_path / "run"
    result = nasty_train(
        "fit",
        "--model.model_name",
        tiny_bert,
        "--data.train_file",
        toy_treebank["train"],
        "--data.val_file",
        toy_treebank["dev"],
        "--model.learning_rate",
        "1e-3",
        *batching,
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        root,
        "--trainer.enable_progress_bar",
        "false",
        *FLOAT32,
        *DDP,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch 1 completed." in result.stdout
    assert "MEMBER: 2/2" in result.stderr and "gloo" in result.stderr
    ddp_fit_acc = float([r for r in metrics(root) if r["val_acc"]][-1]["val_acc"])
    # 17 dev sentences in batches of 2: the two ranks hold 8 and 9 sentences, nothing repeated
    single = validate(
        root / "checkpoints" / "last.ckpt", toy_treebank["dev"], tmp_path / "v1", "--trainer.devices", "1"
    )
    ddp = validate(root / "checkpoints" / "last.ckpt", toy_treebank["dev"], tmp_path / "v2", *DDP)
    assert ddp == pytest.approx(single, abs=1e-7)
    assert ddp_fit_acc == pytest.approx(single, abs=1e-6)
