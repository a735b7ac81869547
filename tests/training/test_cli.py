"""``nasty-train fit`` / ``test`` end to end on a toy treebank with a tiny random BERT."""

from __future__ import annotations

import platform
import re
import sys

import pytest
import torch
import yaml
from clirun import fit_args, metrics, nasty_train, printed_metric

from nasty_lightning.commands.cli import keep_freed_memory, main
from nasty_lightning.modelling.precision import fastest_precision
from nasty_lightning.training.module import TokenTagger

TAGS = ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]


@pytest.fixture(scope="module")
def fitted(tiny_bert, toy_treebank, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    # bf16-mixed whatever the machine, validation in float32: it must score as the float32 model does (test below)
    bf16 = ("--trainer.precision", "bf16-mixed", "--model.validation_precision", "float32")
    args = fit_args(tiny_bert, toy_treebank, root, *bf16, "--progress.every_n_steps", "4")
    result = nasty_train(*args)  # output to a pipe, as to a log file
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


@pytest.mark.slow
def test_fit_learns_and_reports_each_epoch(fitted):
    root, result = fitted
    lines = [line for line in result.stdout.splitlines() if " completed. validation_loss: " in line]
    assert [line.split()[1] for line in lines] == ["1", "2", "3", "4"]
    rows = [r for r in metrics(root) if r["val_acc"]]
    assert len(rows) == 4 + 6  # after every epoch (8 steps), and at steps 5, 10, ..., 30 in between
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert float(rows[-1]["val_acc"]) > float(rows[0]["val_acc"]) + 0.2


@pytest.mark.slow
def test_a_fit_logged_to_a_file_prints_lines_and_no_noise(fitted):
    _, result = fitted
    out = result.stdout.splitlines()
    assert "Epoch 1/4, Iteration 4/8: loss=" in "\n".join(out) and " it/s, 0:00:" in "\n".join(out)
    assert [line for line in out if line.startswith("Epoch 1/4, ")] == [
        next(line for line in out if line.startswith("Epoch 1/4, Iteration 4/8: loss=")),
        next(line for line in out if line.startswith("Epoch 1/4, Iteration 5/8: validation_loss: ")),
        next(line for line in out if line.startswith("Epoch 1/4, Iteration 8/8: loss=")),
    ]
    assert "Epoch 2/4, Iteration 2/8: validation_loss: " in result.stdout  # step 10, mid-epoch
    everything = result.stdout + result.stderr
    for noise in ("Tip:", "LOAD REPORT", "Loading weights", "weights_only", "deprecated", "Epoch 0", "\r", "FLOPs"):
        assert noise not in everything, noise
    for noise in ("GPU available", "Automatic Mixed Precision", "`Trainer.fit` stopped"):
        assert noise not in everything, noise


@pytest.mark.slow
def test_a_fit_says_what_it_will_do_and_what_it_did(fitted, toy_treebank):
    root, result = fitted
    first = result.stdout.splitlines()[:7]
    assert first[0].startswith("model: ") and first[0].endswith(" parameters)")
    assert first[1] == f"training: {toy_treebank['train']}: 64 sentences, 486 words"
    assert first[2].startswith(f"validation: {toy_treebank['dev']}: 17 sentences, ")
    assert first[3] == "labels: upos 6"
    assert first[4] == "batches per epoch: 8; 4 epochs, 32 steps"
    assert first[5] == "learning rates: encoder 1.0e-03, heads 7.9e-03 (default for 32 steps)"
    assert first[6] == f"precision: bf16-mixed, on 1 cpu device(s); writing to {root}"
    done, then = result.stdout.splitlines()[-2:]
    assert done.startswith("Done in ") and ". Best val_acc " in done and f"the model is in {root / 'model'}" in done
    assert then == f"Next: nasty-train eval --model_dir {root / 'model'} --test_file {toy_treebank['dev']}"


@pytest.mark.slow
def test_the_first_progress_line_comes_early_whatever_the_interval(
    tiny_bert, toy_treebank, tmp_path, monkeypatch, capsys
):
    from nasty_lightning.training import progress

    monkeypatch.setattr(progress, "FIRST_LINE_SECONDS", 0.0)  # as if the first iterations had taken 30 s
    lines = ("--progress.lines", "true", "--progress.every_n_steps", "1000", "--trainer.max_epochs", "1")
    main(fit_args(tiny_bert, toy_treebank, tmp_path, *lines))
    progress_lines = [line for line in capsys.readouterr().out.splitlines() if ": loss=" in line]
    assert [line.split(":")[0] for line in progress_lines] == ["Epoch 1/1, Iteration 1/8"]


@pytest.mark.slow
def test_the_progress_bar_counts_epochs_from_1(tiny_bert, toy_treebank, tmp_path, capsys):
    bar = ("--trainer.enable_progress_bar", "true", "--progress.lines", "false", "--trainer.max_epochs", "2")
    main(fit_args(tiny_bert, toy_treebank, tmp_path, *bar))
    bars = capsys.readouterr().out  # Lightning's bar writes to standard output
    assert "Epoch 1/2" in bars and "Epoch 2/2" in bars and "Epoch 0" not in bars


@pytest.mark.slow
def test_checkpoints_exist_and_reload(fitted, toy_treebank):
    root, _ = fitted
    ckpts = root / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "best.ckpt",
        "epoch=0.ckpt",
        "epoch=1.ckpt",
        "epoch=2.ckpt",
        "epoch=3.ckpt",
        "last.ckpt",
    ]
    best_score = max(float(r["val_acc"]) for r in metrics(root) if r["val_acc"])
    for path in ckpts.iterdir():
        model = TokenTagger.load_from_checkpoint(path, map_location="cpu")
        assert model.labels == TAGS and model.model.config.id2label[3] == "NOUN"
    # Only last.ckpt, which a run resumes from, keeps the optimizer state: the others are a third of its size.
    for path in ckpts.iterdir():
        full = "optimizer_states" in torch.load(path, weights_only=True)
        assert full == (path.name == "last.ckpt"), path.name
    raw = torch.load(ckpts / "best.ckpt", weights_only=True)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(raw["tokenizer_files"])
    assert raw["TaggingDataModule"]["labels"] == TAGS and raw["hf_config"]["model_type"] == "bert"
    monitor = next(v for k, v in raw["callbacks"].items() if k.startswith("ModelCheckpoint") and "'val_acc'" in k)
    assert float(monitor["best_model_score"]) == pytest.approx(best_score)
    assert (root / "config.yaml").is_file()


@pytest.mark.slow
def test_test_from_checkpoint_needs_no_training_file(fitted, toy_treebank, tmp_path):
    root, _ = fitted
    raw = torch.load(root / "checkpoints" / "best.ckpt", weights_only=True)
    best = next(v for k, v in raw["callbacks"].items() if k.startswith("ModelCheckpoint") and "'val_acc'" in k)[
        "best_model_score"
    ]
    result = nasty_train(
        "test",
        "--ckpt_path",
        root / "checkpoints" / "best.ckpt",
        "--data.test_file",
        toy_treebank["dev"],
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.enable_progress_bar",
        "false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the test file is the validation file, so the score equals the best validation score
    assert printed_metric(result.stdout, "test_acc") == pytest.approx(float(best), abs=1e-6)


@pytest.mark.slow
def test_command_line_overrides_change_the_run(tiny_bert, toy_treebank, tmp_path):
    overrides = ("--trainer.max_epochs", "2", "--data.batch_size", "16", "--validation.every_n_steps", "1000")
    main(fit_args(tiny_bert, toy_treebank, tmp_path, *overrides))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch=*")) == ["epoch=0.ckpt", "epoch=1.ckpt"]
    assert max(int(r["step"]) for r in metrics(tmp_path)) == 2 * 64 // 16 - 1
    # every_n_steps beyond an epoch is no error, and validation still runs after each epoch
    assert len([r for r in metrics(tmp_path) if r["val_acc"]]) == 2
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["data"]["batch_size"] == 16
    assert config["trainer"]["precision"] == fastest_precision()  # chosen for this machine, and recorded


@pytest.mark.slow
def test_run_folder_is_not_overwritten_silently(fitted, tiny_bert, toy_treebank, tmp_path):
    root, _ = fitted
    before = (root / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    result = nasty_train(*fit_args(tiny_bert, toy_treebank, root))
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "--ckpt_path last" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "checkpoints" / "best.ckpt").stat().st_mtime_ns == before


@pytest.mark.slow
def test_overwrite_replaces_the_run(tiny_bert, toy_treebank, tmp_path):
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "2"))
    assert (tmp_path / "model").is_dir()
    # Stopped before it could export: the old run's model must not pass for the new run's.
    stop = ("--trainer.callbacks+=faulty.SignalAt", "--trainer.callbacks.at_step=2", "--trainer.callbacks.signum=2")
    stopped = nasty_train(*fit_args(tiny_bert, toy_treebank, tmp_path, "--overwrite", "true", *stop))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "1", "--overwrite", "true"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch=*")) == ["epoch=0.ckpt"]


def test_a_run_stopped_before_its_first_checkpoint_is_no_run_to_keep(tiny_bert, toy_treebank, tmp_path):
    (tmp_path / "config.yaml").write_text("left: by a run stopped while it loaded its model\n")
    (tmp_path / "metrics.csv").write_text("epoch,step\n")
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "1"))  # no --overwrite needed
    assert "left:" not in (tmp_path / "config.yaml").read_text()


def test_commands_can_be_found(capsys):
    for argv, status in ((["--help"], 0), ([], 2)):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == status
        captured = capsys.readouterr()
        usage = captured.out + captured.err
        for command in ("fit", "validate", "test", "eval", "tag", "export", "quantize", "serve"):
            assert f"\n  {command} " in usage, command
        assert "predict" not in usage  # tag writes what a model predicts
    with pytest.raises(SystemExit) as exit_:
        main(["fitt"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "nasty-train: error: unknown command 'fitt' "
        "(commands: fit, validate, test, eval, tag, export, quantize, serve); did you mean 'fit'?\n"
    )


@pytest.mark.parametrize(
    "argv, hint",
    [
        (
            ["fit", "--data.batchsize", "3"],
            "nasty-train fit: error: unknown option --data.batchsize, did you mean --data.batch_size or "
            "--data.eval_batch_size? (nasty-train fit --help lists every option)",
        ),
        (
            ["tag", "--model_dri", "x"],
            "nasty-train tag: error: unknown option --model_dri, did you mean --model_dir? "
            "(nasty-train tag --help lists every option)",
        ),
        (
            ["tag", "--batch_size", "x"],
            "nasty-train tag: error: --batch_size: Expected a <class 'int'>. Got value: x "
            "(nasty-train tag --help lists every option)",
        ),
    ],
)
def test_a_misspelt_option_gets_one_line_with_a_suggestion(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == hint  # one line: no usage listing before it


def test_the_guides_flags_are_aliases_of_fits_options(capsys):
    guide = ["--model", "minilm", "--train", "t.conllu", "--validation", "v.conllu", "--test", "x.conllu"]
    guide += ["--output", "runs/g", "--epochs", "5", "--batch-size", "8", "--learning-rate", "2e-5"]
    with pytest.raises(SystemExit):
        main(["fit", *guide, "--max-length=128", "--eval-steps", "100", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["model_name"] == "minilm" and config["model"]["learning_rate"] == 2e-5
    assert (config["data"]["train_file"], config["data"]["val_file"]) == ("t.conllu", "v.conllu")
    assert (config["data"]["test_file"], config["data"]["batch_size"], config["data"]["max_length"]) == (
        "x.conllu",
        8,
        128,
    )
    assert (config["trainer"]["default_root_dir"], config["trainer"]["max_epochs"]) == ("runs/g", 5)
    assert config["validation"]["every_n_steps"] == 100


@pytest.mark.slow
def test_resume_from_last_of_a_finished_run_trains_no_further(tiny_bert, toy_treebank, tmp_path):
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "1"))
    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "1", "--ckpt_path", "last"))
    assert not (tmp_path / "checkpoints" / "epoch=1.ckpt").exists()
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 8


@pytest.mark.parametrize(
    "change, message",
    [
        (("--data.val_file", "null"), "fit needs --data.val_file"),
        (("--model.model_name", "no_such_model"), "preset: minilm, roberta_base, bert_base_cased"),
        (("--data.train_file", "missing.conllu"), "missing.conllu does not exist"),
        (("--data.batch_size", "0"), "batch_size must be positive"),
        (("--data.label_column", "sense"), "no column 'sense' in this file (its columns: id, form, lemma, upos"),
        (("--data.max_tokens", "100"), "--data.max_tokens 100 must be at least --data.max_length (512)"),
        (("--ckpt_path", "last"), "--ckpt_path last: there is no"),
        (("--model.learning_rate", "0"), "--model.learning_rate must be positive, got 0.0"),
        (("--model.learning_rate=-1e-5",), "--model.learning_rate must be positive, got -1e-05"),
        (("--trainer.max_epochs=-1",), "--trainer.max_epochs must be at least 1, got -1"),
        (("--trainer.max_epochs", "0"), "--trainer.max_epochs must be at least 1, got 0"),
        # the tiny BERT's tokenizer reports no length limit: its position table is the limit
        (("--data.max_length", "600"), "--data.max_length 600 exceeds the 512 positions of"),
    ],
)
def test_bad_options_give_one_line_and_status_2(tiny_bert, toy_treebank, tmp_path, capsys, change, message):
    with pytest.raises(SystemExit) as exit_:
        main(fit_args(tiny_bert, toy_treebank, tmp_path, *change))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after transformers' weight-loading bar, where a model was loaded
    assert last.startswith("nasty-train: error: ") and message in last and "Traceback" not in err


def test_a_word_longer_than_max_length_is_reported_at_its_line(tiny_bert, toy_treebank, tmp_path, capsys):
    train = tmp_path / "long-word.conllu"
    long_word = "catdogmatsatran" * 4
    train.write_text(f"1\tthe\t_\tDET\t_\t_\t_\t_\t_\t_\n2\t{long_word}\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n")
    data = {"train": train, "dev": toy_treebank["dev"]}
    with pytest.raises(SystemExit) as exit_:
        main(fit_args(tiny_bert, data, tmp_path / "run", "--data.max_length", "4", "--data.cache_dir", "null"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"nasty-train: error: {train}:2: the word '{long_word}' has " in err, err
    assert "more than max_length=4 leaves room for (2 after the special tokens)" in err


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help lines wrap with the terminal width
    for text in (
        "--data.max_length",
        "split into several windows",
        "--model.learning_rate",
        "--validation.every_n_steps",
        "--early_stopping.patience",
        "--overwrite",
        "--trainer.devices",
        "--data.label_column",
    ):
        assert text in out, text


def test_malloc_is_told_to_keep_freed_memory_unless_the_environment_says_otherwise():
    assert not keep_freed_memory({"MALLOC_ARENA_MAX": "2"})  # what the user set wins
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory({})


def test_a_warning_is_one_line_without_the_path_of_the_code():
    import subprocess

    script = "from nasty_lightning.commands.quiet import quiet; import warnings; quiet(); warnings.warn('dev: 3 words')"
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err == "nasty-train: warning: dev: 3 words\n"


def test_output_to_a_closed_pipe_ends_quietly():
    import subprocess

    from clirun import NASTY_TRAIN

    process = subprocess.Popen([NASTY_TRAIN, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -1` does once it has its line, here before anything is written
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 141 and err == "", err


@pytest.mark.slow
def test_the_progress_bar_of_a_run_resumed_mid_epoch_counts_its_epoch(tiny_bert, toy_treebank, tmp_path):
    bar = ("--trainer.enable_progress_bar", "true", "--progress.lines", "false", "--trainer.max_epochs", "2")
    stop = ("--trainer.callbacks+=faulty.SignalAt", "--trainer.callbacks.at_step=11", "--trainer.callbacks.signum=2")
    assert nasty_train(*fit_args(tiny_bert, toy_treebank, tmp_path, *bar, *stop)).returncode == 130
    resumed = nasty_train(*fit_args(tiny_bert, toy_treebank, tmp_path, *bar, "--ckpt_path", "last"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    bars = resumed.stdout.replace("\r", "\n")
    assert "Epoch 2/2:  62%" in bars and " 5/8 " in bars  # 12 steps done: the fifth batch of the second epoch
    assert not re.search(r"\b[1-9]\d*/\?", bars)  # no bar without its total: the symptom was "5/?"


@pytest.mark.slow
def test_tensorboard_logs_beside_metrics_csv(tiny_bert, toy_treebank, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    main(fit_args(tiny_bert, toy_treebank, tmp_path, "--trainer.max_epochs", "2", "--tensorboard", "true"))
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "val_acc", "val_loss"} <= set(tags)
    assert [e.value for e in events.Scalars("val_acc")] == [
        float(r["val_acc"]) for r in metrics(tmp_path) if r["val_acc"]
    ]
