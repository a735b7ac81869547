"""Files are untrusted input, a run folder belongs to one run, and a resume is the same run or is refused.

Each case ends with one line on standard error and exit status 2, and changes nothing it should not.
"""

from __future__ import annotations

import errno
import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch
from clirun import copy_run, fails, fit_args, metrics, nasty_train, printed_metric, snapshot

from nasty_lightning.commands.cli import main
from nasty_lightning.commands.run_folder import claim_run_folder
from nasty_lightning.training import checkpoint_io
from nasty_lightning.training.warm_start import encoder_from_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(tiny_bert, toy_treebank, tmp_path_factory):
    """A finished run: 2 epochs of 8 steps, validated every 5 steps."""
    root = tmp_path_factory.mktemp("base")
    result = nasty_train(*fit_args(tiny_bert, toy_treebank, root, "--trainer.max_epochs", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def evil_model_dir(tiny_bert, folder, marker):
    """A model directory whose config names model code that would create ``marker`` when imported."""
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForTokenClassification": "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    return folder


def trained_accuracy(base) -> float:
    """The dev accuracy ``base``'s best checkpoint was saved with (fit may validate in bf16, test in float32:
    a word or two of 127 may differ)."""
    return torch.load(base / "checkpoints" / "best.ckpt", weights_only=True)["validation_scores"]["val_acc"]


def crafted(ckpt, path, edit):
    saved = torch.load(ckpt, weights_only=True)
    edit(saved)
    torch.save(saved, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", ["test", "validate"])
def test_checkpoint_settings_never_turn_on_remote_code(base, tiny_bert, toy_treebank, tmp_path, capsys, command):
    marker = tmp_path / "code-ran"
    evil = evil_model_dir(tiny_bert, tmp_path / "evil", marker)

    def point_at_evil_code(ckpt):
        ckpt["hyper_parameters"].update(trust_remote_code=True, model_name=str(evil))

    ckpt = crafted(base / "checkpoints" / "best.ckpt", tmp_path / "crafted.ckpt", point_at_evil_code)
    split = "test" if command == "test" else "val"
    run = [command, "--ckpt_path", ckpt, f"--data.{split}_file", toy_treebank["dev"]]
    run += ["--trainer.default_root_dir", tmp_path / "out", "--trainer.enable_progress_bar", "false"]
    # The model comes from the checkpoint itself: its saved model name (the evil folder) is not even read.
    main([str(a) for a in run])
    accuracy = printed_metric(capsys.readouterr().out, f"{split}_acc")
    assert accuracy == pytest.approx(trained_accuracy(base), abs=2.5 / 127) and not marker.exists()
    # What the user types wins over the checkpoint: that folder, named by hand, is refused.
    line = fails([*run, "--model.model_name", evil, "--model.trust_remote_code", "false"], capsys)
    assert "names model code (auto_map); nasty-train does not run code from files" in line
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoint_needs_no_base_model(base, toy_treebank, tmp_path):
    ckpt = crafted(
        base / "checkpoints" / "best.ckpt",
        tmp_path / "moved.ckpt",
        lambda c: c["hyper_parameters"].update(model_name=str(tmp_path / "deleted-base-model")),
    )
    result = nasty_train(
        "test", "--ckpt_path", ckpt, "--data.test_file", toy_treebank["dev"], "--trainer.enable_progress_bar", "false"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert printed_metric(result.stdout, "test_acc") == pytest.approx(trained_accuracy(base), abs=2.5 / 127)


@pytest.mark.slow
def test_checkpoint_config_naming_code_is_refused(base, toy_treebank, tmp_path, capsys):
    ckpt = crafted(
        base / "checkpoints" / "best.ckpt",
        tmp_path / "crafted.ckpt",
        lambda c: c["hf_config"].update(auto_map={"AutoModelForTokenClassification": "evil.Evil"}),
    )
    line = fails(["test", "--ckpt_path", ckpt, "--data.test_file", toy_treebank["dev"]], capsys)
    assert f"checkpoint {ckpt}: the model configuration names model code (auto_map)" in line


class Payload:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        ("pickle", "is not a readable checkpoint (UnpicklingError); intact checkpoints beside it: best.ckpt"),
        ("truncated", "is not a readable checkpoint (RuntimeError); intact checkpoints beside it: best.ckpt, epoch"),
        ("empty", "is not a readable checkpoint (an empty file); intact checkpoints beside it: best.ckpt, epoch=0"),
    ],
)
def test_damaged_last_checkpoint_is_refused(base, tiny_bert, toy_treebank, tmp_path, capsys, damage, message):
    root = copy_run(base, tmp_path)
    last, marker = root / "checkpoints" / "last.ckpt", tmp_path / "code-ran"
    if damage == "pickle":
        torch.save({"state_dict": Payload(marker)}, last)
    else:
        last.write_bytes(last.read_bytes()[:2000] if damage == "truncated" else b"")
    before = snapshot(root)
    line = fails(fit_args(tiny_bert, toy_treebank, root, "--trainer.max_epochs", "2", "--ckpt_path", "last"), capsys)
    assert message in line
    assert not marker.exists() and snapshot(root) == before


def test_resuming_is_only_last_of_the_same_folder(base, tiny_bert, toy_treebank, tmp_path, capsys):
    other = copy_run(base, tmp_path)
    existing = pathlib.Path(shutil.copytree(base, tmp_path / "existing"))
    before = snapshot(existing)
    foreign = other / "checkpoints" / "epoch=0.ckpt"
    line = fails(fit_args(tiny_bert, toy_treebank, existing, "--ckpt_path", foreign), capsys)
    assert "fit --ckpt_path resumes the run in --trainer.default_root_dir from its last.ckpt" in line
    assert f"--model.model_name {foreign} (a warm start)" in line
    assert snapshot(existing) == before


@pytest.mark.slow
def test_warm_start_keeps_the_weights_without_the_base_model(base, toy_treebank, tmp_path):
    best = base / "checkpoints" / "best.ckpt"
    best_score = max(float(r["val_acc"]) for r in metrics(base) if r["val_acc"])
    # The model name is the checkpoint, not the tiny BERT it was trained from; a learning rate too small to
    # change anything: the first validation scores what the checkpoint scored.
    args = fit_args(
        best, toy_treebank, tmp_path / "warm", "--model.learning_rate", "1e-12", "--trainer.max_epochs", "1"
    )
    result = nasty_train(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    first = next(float(r["val_acc"]) for r in metrics(tmp_path / "warm") if r["val_acc"])
    assert first == pytest.approx(best_score, abs=1e-6)


def test_warm_start_matches_tags_by_name(base):
    best = str(base / "checkpoints" / "best.ckpt")
    saved = torch.load(best, weights_only=True)
    old = saved["TaggingDataModule"]["labels"]
    labels = ["VERB", "NEWTAG", "NOUN"]
    model = encoder_from_checkpoint(best, labels)
    weight, bias = saved["state_dict"]["model.classifier.weight"], saved["state_dict"]["model.classifier.bias"]
    for i, label in ((0, "VERB"), (2, "NOUN")):
        assert torch.equal(model.classifier.weight[i], weight[old.index(label)])
        assert torch.equal(model.classifier.bias[i], bias[old.index(label)])
    assert model.config.id2label == dict(enumerate(labels))
    assert torch.equal(
        model.bert.embeddings.word_embeddings.weight,
        saved["state_dict"]["model.bert.embeddings.word_embeddings.weight"],
    )


@pytest.mark.slow
def test_a_second_fit_on_a_claimed_folder_is_refused(tiny_bert, toy_treebank, tmp_path):
    root = tmp_path / "run"
    with claim_run_folder(root, root / "checkpoints", resume=False, overwrite=False):
        result = nasty_train(*fit_args(tiny_bert, toy_treebank, root))
        holder = (root / ".lock").read_text().strip()
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{root} is in use by another nasty-train fit (process {holder})" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in root.iterdir()) == [".lock"]  # the refused run wrote nothing


def test_a_killed_claim_is_released(tmp_path):
    root = tmp_path / "run"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom nasty_lightning.commands.run_folder import claim_run_folder\n"
        f"with claim_run_folder(Path({str(root)!r}), Path({str(root / 'checkpoints')!r}), False, False):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match="in use by another nasty-train fit"):
            with claim_run_folder(root, root / "checkpoints", resume=False, overwrite=False):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claim_run_folder(root, root / "checkpoints", resume=False, overwrite=False):
        assert (root / ".lock").read_text().strip() == str(__import__("os").getpid())


def test_stale_partial_checkpoints_are_removed(base, tiny_bert, toy_treebank, tmp_path):
    root = copy_run(base, tmp_path)
    stale = root / "checkpoints" / ".last.ckpt.12345.part"
    stale.write_bytes(b"half a checkpoint")
    main([str(a) for a in fit_args(tiny_bert, toy_treebank, root, "--trainer.max_epochs", "2", "--ckpt_path", "last")])
    assert not stale.exists()


@pytest.mark.slow
def test_disk_full_names_the_last_good_checkpoint(tiny_bert, toy_treebank, tmp_path, capsys, monkeypatch):
    saves = []
    real_save = torch.save

    def fills_the_disk(obj, f):
        saves.append(obj.get("global_step"))
        if len(saves) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_io.torch, "save", fills_the_disk)
    line = fails(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "2"), capsys)
    monkeypatch.undo()
    assert "(No space left on device); nothing saved before is lost: the last checkpoint written is " in line
    good = pathlib.Path(line.split("the last checkpoint written is ")[1].split(" (step")[0])
    assert torch.load(good, weights_only=True)["global_step"] == saves[1]
    assert f"(step {saves[1]}); make room and resume with --ckpt_path last" in line
    assert not list((tmp_path / "checkpoints").glob(".*.part"))


@pytest.mark.parametrize(
    "change, message",
    [
        (("--data.batch_size", "4"), "with --data.batch_size 8, not 4"),
        (("--seed_everything", "7"), "with --seed_everything 42, not 7"),
        (("--model.learning_rate", "2e-3"), "with --model.learning_rate 0.001, not 0.002"),
        (("--trainer.max_epochs", "1"), "with --trainer.max_epochs 2, not 1"),
        (("--trainer.max_epochs", "3"), "with --trainer.max_epochs 2, not 3"),
        (("--model.casing", "true"), "with --model.casing False, not True"),
        (("--data.train_file", "OTHER"), "on a --data.train_file with other content; a resumed run keeps"),
        (
            ("--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"),
            "on 1 processes (--trainer.devices x --trainer.num_nodes), not 2",
        ),
    ],
    ids=["batch_size", "seed", "learning_rate", "fewer_epochs", "more_epochs", "casing", "train_file", "devices"],
)
def test_resume_with_changed_settings_is_refused(base, tiny_bert, toy_treebank, tmp_path, capsys, change, message):
    root = copy_run(base, tmp_path)
    if "OTHER" in change:
        other = tmp_path / "other.conllu"
        other.write_text(toy_treebank["train"].read_text().split("\n\n", 1)[1])  # one sentence fewer
        change = (change[0], other)
    before = snapshot(root)
    line = fails(
        fit_args(tiny_bert, toy_treebank, root, "--trainer.max_epochs", "2", "--ckpt_path", "last", *change), capsys
    )
    assert f"--ckpt_path last: the run was trained {message}" in line
    assert f"(--model.model_name {root / 'checkpoints' / 'last.ckpt'}, a warm start)" in line
    assert snapshot(root) == before
