"""A model directory is whole, or refused; writing one never loses a file the tool did not write.

Most cases use the v1 UPOS fixture (a tiny BERT tagger, copied and altered by hand), a few a fresh fit.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from clirun import fit_args, nasty_train
from conftest import V1_MODEL
from onnx import TensorProto, helper
from safetensors.torch import load_file, save_file
from tiny_models import build_bert, build_roberta, build_xlmr
from transformers import BertTokenizer, DistilBertTokenizer, RobertaTokenizer, XLMRobertaTokenizer

import nasty_lightning.inference.tagger as inference
from nasty_lightning.commands.cli import main
from nasty_lightning.errors import UserError
from nasty_lightning.formats.outputs import atomic_dir
from nasty_lightning.inference.quantize import quantize
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.labels.heads import Head, LabelVocab

V1 = V1_MODEL


def cli_error(capsys, *args) -> str:
    """The one line of ``nasty-train ARGS`` run in-process, at exit status 2, without a traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if not line.startswith("\rLoading weights")]
    assert line.startswith("nasty-train: error: ") and "Traceback" not in err, err
    return line.removeprefix("nasty-train: error: ")


def altered(tmp_path: Path, name: str, config=None, meta=None) -> Path:
    """A copy of V1 whose config.json and nasty_lightning.json the functions given change in place."""
    folder = Path(shutil.copytree(V1, tmp_path / name))
    for file, edit in (("config.json", config), ("nasty_lightning.json", meta)):
        if edit is not None:
            content = json.loads((folder / file).read_text())
            edit(content)
            (folder / file).write_text(json.dumps(content))
    return folder


def relabel(config, labels):
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def two_columns(tiny_bert, morphology, tmp_path_factory) -> Path:
    """A fitted run of UPOS and XPOS (two heads: heads.safetensors), one epoch."""
    root = tmp_path_factory.mktemp("two")
    args = fit_args(tiny_bert, morphology, root, "--data.label_column", "[upos, xpos]", "--trainer.max_epochs", "1")
    result = nasty_train(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


# Output folders never lose a file


def test_quantize_refuses_to_write_over_or_into_its_model_dir(morphology, tmp_path):
    model = Path(shutil.copytree(V1, tmp_path / "model"))
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for out in (model, model / "int8", tmp_path):
        with pytest.raises(UserError, match=r"or a folder in or around it: give the INT8 copy a folder of its own$"):
            quantize(str(model), str(morphology["dev"]), str(out), threads=1, max_accuracy_drop=100)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


@pytest.mark.slow
def test_quantize_into_an_earlier_output_keeps_the_users_files(morphology, tmp_path):
    out = Path(shutil.copytree(V1, tmp_path / "out"))  # an earlier export: its weights are the tool's own
    (out / "my_notes.txt").write_text("mine")
    (out / "eval_results").mkdir()
    (out / "eval_results" / "dev.json").write_text("{}")
    quantize(str(V1), str(morphology["dev"]), str(out), threads=1, max_accuracy_drop=100)
    assert "model.onnx" in names(out) and "model.safetensors" not in names(out)
    assert {"my_notes.txt", "eval_results"} <= set(names(out)) and names(tmp_path) == ["out"]
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "eval_results" / "dev.json").read_text() == "{}"
    assert Tagger.load(out).onnx is not None


@pytest.mark.slow
def test_what_a_killed_export_left_is_tidied_by_the_next(two_columns, tmp_path):
    best, out = two_columns / "checkpoints" / "best.ckpt", tmp_path / "m"
    main(["export", "--ckpt_path", str(best), "--output_dir", str(out)])
    # killed after setting the earlier folder aside: its user file is there only; and a half-built folder
    aside = Path(shutil.copytree(out, tmp_path / ".m.0badc0de.old"))
    (aside / "my_notes.txt").write_text("mine")
    shutil.rmtree(out)
    shutil.copytree(two_columns / "model", tmp_path / ".m.deadbeef.part")
    (tmp_path / ".other.0badc0de.old").mkdir()  # beside another folder: not this export's
    main(["export", "--ckpt_path", str(best), "--output_dir", str(out)])
    assert names(tmp_path) == [".other.0badc0de.old", "m"]
    assert (out / "my_notes.txt").read_text() == "mine"
    # killed after the swap: the earlier folder, left aside for good, goes
    shutil.copytree(out, tmp_path / ".m.12345678.old")
    main(["export", "--ckpt_path", str(best), "--output_dir", str(out)])
    assert names(tmp_path) == [".other.0badc0de.old", "m"]


def test_a_leftover_a_running_export_holds_is_left_alone(tmp_path):
    import fcntl
    import os

    building = tmp_path / ".m.0badc0de.part"
    building.mkdir()
    fd = os.open(building, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with atomic_dir(tmp_path / "m") as out:
            (out / "config.json").write_text("{}")
        assert building.is_dir()
    finally:
        os.close(fd)
    with atomic_dir(tmp_path / "m") as out:
        (out / "config.json").write_text("{}")
    assert names(tmp_path) == ["m"]


# A model directory is whole, or refused


def test_tokenizer_files_are_the_names_tokenizers_write(tmp_path):
    from nasty_lightning.formats.model_dir import OWN_FILES, TOKENIZER_FILES

    written = set()
    for build in (build_bert, build_roberta, build_xlmr):
        folder = build(tmp_path / build.__name__)
        written |= {p.name for p in folder.iterdir()} - {"config.json", "model.safetensors", "generation_config.json"}
    assert written <= TOKENIZER_FILES
    for tokenizer in (BertTokenizer, DistilBertTokenizer, RobertaTokenizer, XLMRobertaTokenizer):
        assert set(tokenizer.vocab_files_names.values()) <= TOKENIZER_FILES, tokenizer
    import transformers.tokenization_utils_base as base

    assert {getattr(base, n) for n in dir(base) if n.endswith("_FILE")} <= TOKENIZER_FILES
    assert {
        "heads.safetensors",
        "casing.safetensors",
        "model.onnx",
        "training_curves.png",
    } <= OWN_FILES - TOKENIZER_FILES


@pytest.mark.slow
def test_what_export_and_quantize_write_is_theirs(two_columns, morphology, tmp_path):
    """Every file they write is on the list an export into an earlier one replaces."""
    from nasty_lightning.formats.model_dir import OWN_FILES

    main(["export", "--ckpt_path", str(two_columns / "checkpoints" / "best.ckpt"), "--output_dir", str(tmp_path / "f")])
    quantize(str(two_columns / "model"), str(morphology["dev"]), str(tmp_path / "q"), threads=1, max_accuracy_drop=100)
    assert set(names(tmp_path / "f")) | set(names(tmp_path / "q")) <= OWN_FILES


@pytest.mark.slow
def test_a_load_while_the_folder_is_replaced_is_one_model(tmp_path, monkeypatch):
    """A writer keeps replacing the folder with one of two models (other labels, window, weights) while
    loads go on; each load is the one or the other, never config.json of one and weights of the other."""
    a = Path(shutil.copytree(V1, tmp_path / "a"))
    b = altered(tmp_path, "b", config=lambda c: relabel(c, [f"B{i}" for i in range(6)]))
    b_meta = json.loads((b / "nasty_lightning.json").read_text())
    (b / "nasty_lightning.json").write_text(json.dumps({**b_meta, "max_length": 256}))
    weights = load_file(b / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1
    save_file(weights, b / "model.safetensors")
    target = tmp_path / "model"
    shutil.copytree(a, target)
    real_load = inference.bert_family.load

    def slow_load(*args, **kwargs):  # a slow disk: the files are read further apart
        time.sleep(0.004)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(inference.bert_family, "load", slow_load)
    signature = {
        (512, "ADJ", float(load_file(a / "model.safetensors")["classifier.bias"][0])),
        (256, "B0", float(weights["classifier.bias"][0])),
    }
    stop = threading.Event()
    loaded, mixed, refused = 0, [], 0

    def writer():  # at least 60 swaps, and on as long as the loads need to reach 30 (a slow machine), at most 2,000
        for i in range(2000):
            if i >= 60 and loaded >= 30:
                break
            with atomic_dir(target) as out:
                for file in (b if i % 2 == 0 else a).iterdir():
                    shutil.copy(file, out / file.name)
            time.sleep(0.03)
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not stop.is_set():
            try:
                tagger = Tagger.load(target)
            except UserError as err:
                assert "was replaced while it was read" in str(err)
                refused += 1
                continue
            got = (tagger.max_length, tagger.labels[0], float(tagger.model.classifier.bias[0].detach()))
            loaded += 1
            if got not in signature:
                mixed.append(got)
    finally:
        thread.join()
    assert not mixed, f"{len(mixed)} of {loaded} loads mixed two models"
    assert loaded >= 30 and refused < loaded


@pytest.mark.parametrize(
    ("name", "config", "meta", "message"),
    [
        ("fewer_labels", lambda c: relabel(c, ["A", "B"]), None, "id2label names 2 labels, the classifier has 6"),
        ("more_labels", lambda c: relabel(c, list("ABCDEFGH")), None, "id2label names 8 labels, the classifier has 6"),
        ("hidden", lambda c: c.update(hidden_size=64), None, "hidden_size is 64, the classifier reads 32"),
        ("vocab", lambda c: c.update(vocab_size=999), None, "vocab_size is 999, the word embeddings have "),
        ("layers", lambda c: c.update(num_hidden_layers=3), None, "num_hidden_layers is 3, the weights have 2 layers"),
        ("max_length", None, lambda m: m.update(max_length=600), "max_length 600 is more than the 512 positions"),
    ],
)
def test_files_that_do_not_match_the_weights_are_one_line(tmp_path, capsys, morphology, name, config, meta, message):
    folder = altered(tmp_path, name, config, meta)
    long_text = tmp_path / "long.txt"
    long_text.write_text(" ".join(["the cat sat on the mat ."] * 100) + "\n")  # longer than 512 subwords
    for command in (["tag", "--input", long_text], ["eval", "--test_file", morphology["dev"]]):
        assert message in cli_error(capsys, command[0], "--model_dir", folder, *command[1:])


@pytest.mark.slow
def test_serve_refuses_files_that_do_not_match_the_weights_at_start(tmp_path):
    folder = altered(tmp_path, "fewer", config=lambda c: relabel(c, ["A", "B"]))
    result = nasty_train("serve", "--model_dir", folder, "--port", "18765", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith("id2label names 2 labels, the classifier has 6")


@pytest.mark.parametrize(
    ("config", "meta", "label"),
    [
        (lambda c: relabel(c, ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB\t3\tinjected"]), None, "VERB\\t3"),
        (lambda c: relabel(c, ["ADJ", "ADP", "DET", "NOUN", "PUNCT", "VERB\n"]), None, "VERB\\n"),
        (lambda c: relabel(c, ["ADJ", "ADP", "DET", "NOUN", "PUNCT", ""]), None, "''"),
        (None, lambda m: m.update(heads=[{"column": "xpos", "labels": ["NN NS"]}]), "NN NS"),
        (None, lambda m: m.update(heads=[{"column": "lemma", "labels": ['["=","be\\tx"]']}]), "be\\\\tx"),
        (None, lambda m: m.update(heads=[{"column": "ner", "labels": ["O", "B-PER|SpaceAfter=No"]}]), "B-PER|"),
    ],
    ids=["tab", "newline", "empty", "space", "lemma-tab", "ner-bar"],
)
def test_labels_tag_could_not_write_are_refused(tmp_path, capsys, morphology, config, meta, label):
    folder = altered(tmp_path, "bad", config, meta)
    err = cli_error(capsys, "tag", "--model_dir", folder, "--input", morphology["dev"], "--output", tmp_path / "o")
    assert "cannot be written in a CoNLL-U column" in err and label in err
    assert names(tmp_path) == ["bad"]


@pytest.mark.parametrize("column", ["id", "form", "misc", "head", "deps"])
def test_columns_that_no_head_predicts_are_refused(tiny_bert, morphology, tmp_path, capsys, column):
    err = cli_error(capsys, *fit_args(tiny_bert, morphology, tmp_path / "run", "--data.label_column", column))
    assert err.startswith(f"--data.label_column names {column!r}, a column no head predicts: tag would write")
    folder = altered(tmp_path, "model", meta=lambda m: m.update(label_column=column))
    with pytest.raises(UserError, match=f"nasty_lightning.json names {column!r}, a column no head predicts"):
        Tagger.load(folder)


def _onnx_with_function(path: Path, node: onnx.NodeProto) -> Path:
    """A valid model (an Identity) with a local function, never called, whose body is ``node``."""
    function = helper.make_function("local.fn", "Hidden", [], ["y"], [node], [helper.make_opsetid("", 18)])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["out"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], functions=[function])
    onnx.save(model, str(path))
    return path


def test_an_onnx_local_function_is_checked_as_the_graph_is(tmp_path):
    from nasty_lightning.inference.onnx_model import check_onnx

    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value="../../../etc/passwd")
    external = _onnx_with_function(tmp_path / "external.onnx", helper.make_node("Constant", [], ["y"], value=tensor))
    with pytest.raises(UserError, match="tensor 'w' is stored in another file, which is refused"):
        check_onnx(external)
    custom = _onnx_with_function(tmp_path / "custom.onnx", helper.make_node("Evil", [], ["y"], domain="evil.ops"))
    with pytest.raises(UserError, match="needs operators of evil.ops, which are refused"):
        check_onnx(custom)


# Everyday inputs from Python


def test_empty_inputs_give_empty_results():
    tagger = Tagger.load(V1)
    assert tagger.tag("") == tagger.tag("   ") == tagger.tag([[]]) == [[]] and tagger.tag([]) == []
    assert tagger.tag(["", "the cat"]) == [[], tagger.tag("the cat")[0]]


def test_entities_take_a_batch_of_texts_or_of_split_sentences(monkeypatch):
    tagger = Tagger.load(V1)
    # the classifier's six labels read as IOB2 tags: whatever it predicts, some are entities
    tagger = replace(tagger, heads=[Head("ner", LabelVocab(("B-LOC", "B-PER", "I-LOC", "I-PER", "O", "B-ORG")))])
    texts = ["", "The cat sat on the mat near Paris.", "A dog barked at the postman."]
    alone = [tagger.entities(t) for t in texts]
    assert alone[0] == [] and any(alone) and all(isinstance(e, tuple) for found in alone for e in found)
    calls = []
    real_predict = tagger.predict
    monkeypatch.setattr(tagger, "predict", lambda s, *a: calls.append(s) or real_predict(s, *a))
    assert tagger.entities(texts) == alone and len(calls) == 1  # one batch
    split = [inference.split_words(t) for t in texts]
    for text, words, found in zip(texts, split, tagger.entities(split), strict=True):  # offsets count words
        spans = inference.word_spans(text)
        first = {start: i for i, (_, start, _) in enumerate(spans)}
        after = {end: i + 1 for i, (_, _, end) in enumerate(spans)}
        expected = [(first[a], after[b], kind) for _, kind, a, b in tagger.entities(text)]
        assert [(a, b, kind) for _, kind, a, b in found] == expected
        assert [name for name, _, _, _ in found] == [" ".join(words[a:b]) for a, b, _ in expected]
