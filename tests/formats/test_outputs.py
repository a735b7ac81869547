"""``tag``, ``eval`` and the files they write: outputs written whole or not at all and checked before any
work, model folders that could run code refused, and inputs that must not end in a traceback.

The model is a tiny random BERT exported by hand (no training), with a window of 8 subwords.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys

import pytest
import torch
from clirun import nasty_train
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification

from nasty_lightning import Tagger
from nasty_lightning.commands.cli import main
from nasty_lightning.data.encoding import WordTooLong, encode, load_tokenizer
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.formats.model_dir import META_FILE
from nasty_lightning.formats.outputs import atomic_dir, check_output, check_output_dir, write_atomic

TAGS = ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB"]
MAX_LENGTH = 8
LONG_WORD = "catdogmatsatran" * 4


def full_disk(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def model_dir(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    id2label = dict(enumerate(TAGS))
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_bert, num_labels=len(TAGS), id2label=id2label, label2id={t: i for i, t in id2label.items()}
    )
    model.save_pretrained(out)
    load_tokenizer(str(tiny_bert)).save_pretrained(out)
    (out / META_FILE).write_text(json.dumps({"label_column": "upos", "max_length": MAX_LENGTH}))
    return out


def usual_mode(directory: bool = False) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def mode(path) -> int:
    return path.stat().st_mode & 0o777


def fails(capsys, *args) -> str:
    """The error of ``nasty-train ARGS``, checking it is one line at exit status 2, without traceback
    (what comes before it on standard error is the progress bar of transformers' weight loading)."""
    capsys.readouterr()  # what earlier commands printed
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    *before, line, end = err.split("\n")
    assert line.startswith("nasty-train: error: ") and end == "" and "Traceback" not in err, err
    assert all(b.startswith("\rLoading weights: ") for b in before), err
    return line.removeprefix("nasty-train: error: ")


def test_write_atomic_replaces_a_file_with_the_usual_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new\n")
    write_atomic(tmp_path / "fresh.bin", b"\x00\x01")
    assert target.read_text() == "new\n" and (tmp_path / "fresh.bin").read_bytes() == b"\x00\x01"
    assert mode(target) == mode(tmp_path / "fresh.bin") == usual_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "out.txt"]


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_write_atomic_leaves_the_original_when_writing_fails(tmp_path, monkeypatch, step):
    target = tmp_path / "out.txt"
    target.write_bytes(b"original\n")
    monkeypatch.setattr(os, step, full_disk)
    with pytest.raises(UserError) as err:
        write_atomic(target, "new\n")
    assert str(err.value) == f"cannot write {target} (No space left on device); the original file is unchanged"
    assert target.read_bytes() == b"original\n" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(UserError, match="; nothing was written there$"):
        write_atomic(tmp_path / "new.txt", "new\n")
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier export")
    with pytest.raises(UserError, match=f"^cannot write {target} .*; the original folder is unchanged$"):
        with atomic_dir(target) as building:
            (building / "a.txt").write_text("half")
            full_disk()
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["stale.txt"]
    with atomic_dir(target, own={"a.txt", "stale.txt"}) as building:
        (building / "a.txt").write_text("whole")
        (building / "a.txt").chmod(0o600)  # as save_pretrained leaves model.safetensors
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["a.txt"]
    assert mode(target) == usual_mode(directory=True) and mode(target / "a.txt") == usual_mode()


def test_outputs_that_cannot_be_written_are_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=f"^--output {tmp_path}/no/out: the folder {tmp_path}/no does not exist$"):
        check_output(tmp_path / "no" / "out", "--output")
    with pytest.raises(UserError, match="^--output .*/folder: it is a folder, not a file$"):
        check_output(tmp_path / "folder", "--output")
    with pytest.raises(UserError, match="^--output_dir .*/file: it is a file, not a folder$"):
        check_output_dir(tmp_path / "file", "--output_dir", META_FILE)
    with pytest.raises(UserError, match="holds files but no nasty_lightning.json, so it is not an earlier export"):
        check_output_dir(tmp_path / "folder", "--output_dir", META_FILE)
    check_output(tmp_path / "file", "--output")
    check_output_dir(tmp_path / "new", "--output_dir", META_FILE)
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "folder").chmod(0o500)
        with pytest.raises(UserError, match="folder is not writable"):
            check_output(tmp_path / "folder" / "out", "--output")


def test_outputs_are_checked_before_the_model_loads(tmp_path, capsys, toy_treebank):
    missing_model = tmp_path / "no-model"
    err = fails(
        capsys, "tag", "--model_dir", missing_model, "--input", toy_treebank["dev"], "--output", tmp_path / "a/b"
    )
    assert err == f"--output {tmp_path}/a/b: the folder {tmp_path}/a does not exist"
    err = fails(
        capsys, "eval", "--model_dir", missing_model, "--test_file", toy_treebank["dev"], "--output_json", tmp_path
    )
    assert err == f"--output_json {tmp_path}: it is a folder, not a file"
    err = fails(
        capsys, "eval", "--model_dir", missing_model, "--test_file", toy_treebank["dev"], "--confusion_png", "/"
    )
    assert err == "--confusion_png /: it is a folder, not a file"


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_tag_in_place_keeps_the_file_when_the_disk_is_full(
    model_dir, toy_treebank, tmp_path, monkeypatch, capsys, step
):
    conllu = tmp_path / "dev.conllu"
    shutil.copy(toy_treebank["dev"], conllu)
    original = conllu.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(os, step, full_disk)
        err = fails(capsys, "tag", "--model_dir", model_dir, "--input", conllu, "--output", conllu)
    assert err == f"cannot write {conllu} (No space left on device); the original file is unchanged"
    assert conllu.read_bytes() == original and list(tmp_path.iterdir()) == [conllu]
    main(["tag", "--model_dir", str(model_dir), "--input", str(conllu), "--output", str(conllu)])
    tagged = conllu.read_text().splitlines()
    assert len(tagged) == len(original.decode().splitlines()) and mode(conllu) == usual_mode()
    assert {line.split("\t")[3] for line in tagged if line[:1].isdigit()} <= set(TAGS)


@pytest.mark.slow
def test_invalid_utf8_on_standard_input_is_reported_at_its_line(model_dir):
    result = nasty_train("tag", "--model_dir", model_dir, input="The cat sat.\nA d\xf6g ran.\n".encode("latin-1"))
    assert result.returncode == 2
    assert result.stderr == "nasty-train: error: <stdin>:2: invalid UTF-8 at byte 4 of the line\n"


def test_plain_text_on_standard_input_is_tagged(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbfThe cat sat.\r\n\r\nA dog ran.\n")))
    main(["tag", "--model_dir", str(model_dir)])
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("# sent_id")] == ["# sent_id = 1", "# sent_id = 3"]
    rows = [line.split("\t") for line in out if line[:1].isdigit()]
    assert [r[1] for r in rows] == ["The", "cat", "sat", ".", "A", "dog", "ran", "."] and {r[3] for r in rows} <= set(
        TAGS
    )


@pytest.mark.parametrize("batch_size", ["-1", "0"])
@pytest.mark.parametrize("command", ["tag", "eval"])
def test_batch_size_must_be_positive(model_dir, toy_treebank, capsys, command, batch_size):
    data = ["--input" if command == "tag" else "--test_file", toy_treebank["dev"]]
    err = fails(capsys, command, "--model_dir", model_dir, *data, "--batch_size", batch_size)
    assert err == f"--batch_size must be positive, got {batch_size}"
    with pytest.raises(UserError, match="--batch_size must be positive, got 0"):
        Tagger.load(model_dir, batch_size=0)


def test_a_word_longer_than_a_window_is_tagged_on_its_first_subwords(model_dir, tmp_path, capsys):
    tokenizer = load_tokenizer(str(model_dir))
    assert len(tokenizer.tokenize(LONG_WORD)) > MAX_LENGTH
    words = ["the", LONG_WORD, "sat", "."]
    with pytest.raises(WordTooLong):  # training keeps refusing it
        encode([words], tokenizer, MAX_LENGTH)
    windows = encode([words], tokenizer, MAX_LENGTH, long_words="truncate")
    long = next(w for w in windows if w.first_word == 1)
    assert len(long.input_ids) == MAX_LENGTH and long.word_starts == [1]
    assert long.input_ids[1] == tokenizer(LONG_WORD, add_special_tokens=False)["input_ids"][0]
    assert sum(len(w.word_starts) for w in windows) == len(words)

    lines = [f"{i}\t{w}\t{w}\tNOUN\t_\t_\t0\troot\t_\tNote={i}" for i, w in enumerate(words, start=1)]
    source = tmp_path / "long.conllu"
    source.write_text("# sent_id = 1\n" + "\n".join(lines) + "\n\n")
    main(["tag", "--model_dir", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.conllu")])
    tagged = (tmp_path / "out.conllu").read_text().splitlines()
    assert tagged[0] == "# sent_id = 1" and len(tagged) == len(lines) + 2
    for got, want in zip(tagged[1:], lines, strict=False):
        g, w = got.split("\t"), want.split("\t")
        assert g[3] in TAGS and g[:3] + g[4:] == w[:3] + w[4:]
    main(["eval", "--model_dir", str(model_dir), "--test_file", str(source)])
    assert f"of {len(words)} words correct" in capsys.readouterr().out
    assert [len(s) for s in Tagger.load(model_dir).tag([words])] == [len(words)]


@pytest.fixture
def evil_dir(model_dir, tmp_path):
    """The model, with a module that leaves a marker file when imported, named by ``auto_map``."""
    folder = shutil.copytree(model_dir, tmp_path / "evil")
    marker = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForTokenClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.mark.parametrize("command", ["tag", "eval"])
def test_a_model_folder_naming_code_is_refused_without_running_it(evil_dir, toy_treebank, capsys, command):
    folder, marker = evil_dir
    data = ["--input" if command == "tag" else "--test_file", toy_treebank["dev"]]
    err = fails(capsys, command, "--model_dir", folder, *data)
    assert err.startswith(f"{folder}/config.json: the model configuration names model code (auto_map)")
    with pytest.raises(UserError, match="auto_map"):
        Tagger.load(folder)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["tag", "eval"])
def test_pickled_weights_are_refused(model_dir, toy_treebank, tmp_path, capsys, command):
    folder = shutil.copytree(model_dir, tmp_path / "pickled")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    data = ["--input" if command == "tag" else "--test_file", toy_treebank["dev"]]
    err = fails(capsys, command, "--model_dir", folder, *data)
    assert err.startswith(f"{folder} holds its weights as a pickle (pytorch_model.bin), which can run code")


def test_eval_writes_whole_files_with_the_usual_permissions(model_dir, toy_treebank, tmp_path, capsys):
    scores, png = tmp_path / "scores.json", tmp_path / "confusion.png"
    main(
        ["eval", "--model_dir", str(model_dir), "--test_file", str(toy_treebank["dev"])]
        + ["--output_json", str(scores), "--confusion_png", str(png)]
    )
    assert json.loads(scores.read_text())["total"] == sum(len(s.words) for s in read_sentences(toy_treebank["dev"]))
    assert png.read_bytes()[:4] == b"\x89PNG" and mode(scores) == mode(png) == usual_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "scores.json"]
