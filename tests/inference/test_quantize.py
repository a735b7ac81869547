"""``nasty-train quantize``: an INT8 ONNX copy of a model, checked on a labelled file, loadable like any model."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from clirun import fit_args, nasty_train, tag_in_fresh_process
from conftest import V1_MODEL

from nasty_lightning.commands.evaluate import evaluate
from nasty_lightning.errors import UserError
from nasty_lightning.formats.conllu import read_sentences
from nasty_lightning.formats.model_dir import ONNX_FILE
from nasty_lightning.inference.onnx_model import OnnxNetwork
from nasty_lightning.inference.quantize import quantize, quantize_network
from nasty_lightning.inference.tagger import Tagger
from nasty_lightning.modelling.precision import cpu_info

V1 = V1_MODEL


@pytest.fixture(scope="module")
def two_heads_cased(tiny_bert, morphology, tmp_path_factory) -> Path:
    """A model of two columns (UPOS, FEATS) with the casing embedding: every part the ONNX graph must hold."""
    root = tmp_path_factory.mktemp("two")
    args = fit_args(tiny_bert, morphology, root, "--data.label_column", "[upos, feats]", "--model.casing", "true")
    result = nasty_train(*args, "--model.learning_rate", "2e-3", "--trainer.max_epochs", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model"


@pytest.fixture(scope="module")
def quantized(two_heads_cased, morphology, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("int8") / "model"
    result = nasty_train(
        "quantize", "--model_dir", two_heads_cased, "--calibration_file", morphology["dev"], "--output_dir", out,
        "--max_accuracy_drop", "100", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_a_quantized_model_reloads_with_the_tags_of_the_in_memory_one(two_heads_cased, quantized, morphology, tmp_path):
    out, printed = quantized
    words = [s.words for s in read_sentences(morphology["dev"])]
    source = Tagger.load(two_heads_cased)
    quantize_network(source, tmp_path / "in_memory.onnx")
    sizes = [len(h.vocab) for h in source.heads]
    in_memory = replace(source, model=None, onnx=OnnxNetwork.load(tmp_path / "in_memory.onnx", sizes))
    reloaded = Tagger.load(out)
    assert reloaded.onnx is not None and reloaded.model is None
    assert reloaded.columns == ["upos", "feats"] and reloaded.meta["casing"] == source.meta["casing"]
    tags = reloaded.predict(words)
    assert tags == in_memory.predict(words)
    float_tags = source.predict(words)
    for column in ("upos", "feats"):  # INT8 changes few tags of this tiny model, if any
        pairs = [
            (a, b) for s, t in zip(tags[column], float_tags[column], strict=True) for a, b in zip(s, t, strict=True)
        ]
        assert sum(a == b for a, b in pairs) >= 0.9 * len(pairs), column
    # what quantize measured and recorded is what eval measures on the written directory
    record = json.loads((out / "nasty_lightning.json").read_text())["quantization"]
    assert record["int8"]["accuracy"]["upos"] == evaluate(str(out), str(morphology["dev"]))["accuracy"]
    assert record["float32"]["accuracy"]["upos"] == evaluate(str(two_heads_cased), str(morphology["dev"]))["accuracy"]
    assert "upos accuracy  feats accuracy  sentences/s" in printed and re.search(r"^int8 ", printed, re.MULTILINE)
    assert re.search(r"[0-9.]+x (smaller|larger), [0-9.]+x the sentences per second", printed)  # tiny: larger
    assert "INT8" in (out / "README.md").read_text() and "| upos accuracy |" in (out / "README.md").read_text()
    # the card's speeds say on what machine they were measured, and that they are one measurement
    card = " ".join((out / "README.md").read_text().split())
    assert f"one measurement, on the machine that quantized the model ({cpu_info()[0] or 'unknown'}" in card
    assert not list(out.glob("*.bin")) and not list(out.glob("*.safetensors")) and not list(out.glob(".*"))


@pytest.mark.slow
@pytest.mark.integration
def test_tag_and_eval_take_a_quantized_directory(quantized, morphology, tmp_path):
    out, _ = quantized
    tagged = tmp_path / "tagged.conllu"
    assert nasty_train("tag", "--model_dir", out, "--input", morphology["dev"], "--output", tagged).returncode == 0
    expected = Tagger.load(out).predict([s.words for s in read_sentences(morphology["dev"])])
    assert [s.labels("feats") for s in read_sentences(tagged)] == expected["feats"]
    result = nasty_train("eval", "--model_dir", out, "--test_file", morphology["dev"], "--threads", "1")
    assert result.returncode == 0 and "== feats ==" in result.stdout


def _break_classifier(path: Path) -> None:
    """Make every word of the first head score one label: a quantization gone wrong."""
    model = onnx.load(str(path))
    bias = next(t for t in model.graph.initializer if "classifier.bias" in t.name)
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] = 1e4
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(path))


@pytest.mark.slow
def test_the_accuracy_guard_refuses_a_model_that_drops_too_much(morphology, monkeypatch, tmp_path, capsys):
    import nasty_lightning.inference.quantize as module

    def broken(source, path, per_channel):
        quantize_network(source, path, per_channel)
        _break_classifier(path)

    monkeypatch.setattr(module, "quantize_network", broken)
    out = tmp_path / "int8"
    with pytest.raises(UserError, match=r"loses [0-9.]+ points of upos accuracy .* more than --max_accuracy_drop 1.0"):
        quantize(str(V1), str(morphology["dev"]), str(out), threads=1)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no leftovers
    record = quantize(str(V1), str(morphology["dev"]), str(out), threads=1, force=True)
    assert record["int8"]["accuracy"]["upos"] < record["float32"]["accuracy"]["upos"] - 0.2
    assert Tagger.load(out).onnx is not None
    assert re.search(r"^int8 .* \(-[0-9.]+\)", capsys.readouterr().out, re.MULTILINE)  # the drop, printed


@pytest.fixture(scope="module")
def v1_int8(morphology, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("v1int8") / "model"
    record = quantize(str(V1), str(morphology["dev"]), str(out), threads=1, max_accuracy_drop=100, per_channel=False)
    assert "per tensor" in record["weights"]
    return out


@pytest.mark.slow
def test_a_quantized_model_tags_without_importing_transformers(v1_int8):
    """Its labels come from config.json as ``bert_family`` reads it: transformers' import is a second of start-up."""
    tags, modules = tag_in_fresh_process(v1_int8, "the cat sat .", ("transformers",))
    assert tags == str(Tagger.load(v1_int8).tag("the cat sat ."))
    assert modules == []


@pytest.mark.slow
def test_a_quantized_model_whose_config_json_is_not_json_gets_one_line(v1_int8, tmp_path):
    broken = shutil.copytree(v1_int8, tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"broken/config\.json is not valid JSON \(JSONDecodeError\)$"):
        Tagger.load(broken)


@pytest.mark.slow
def test_files_that_do_not_belong_together_are_refused(v1_int8, tmp_path):
    no_record = shutil.copytree(v1_int8, tmp_path / "no_record")
    meta = json.loads((no_record / "nasty_lightning.json").read_text())
    del meta["quantization"]
    (no_record / "nasty_lightning.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="holds model.onnx but its nasty_lightning.json records no quantization"):
        Tagger.load(no_record)

    other_labels = shutil.copytree(v1_int8, tmp_path / "other_labels")
    config = json.loads((other_labels / "config.json").read_text())
    config["id2label"] = {str(i): f"T{i}" for i in range(len(config["id2label"]) + 2)}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (other_labels / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="the files do not belong together"):
        Tagger.load(other_labels)

    missing = shutil.copytree(v1_int8, tmp_path / "missing")
    (missing / ONNX_FILE).unlink()
    with pytest.raises(UserError, match="is not a quantized model directory: missing model.onnx"):
        Tagger.load(missing)

    both = shutil.copytree(v1_int8, tmp_path / "both")
    shutil.copy(V1 / "model.safetensors", both)
    with pytest.raises(UserError, match="holds both model.onnx and model.safetensors"):
        Tagger.load(both)

    garbage = shutil.copytree(v1_int8, tmp_path / "garbage")
    (garbage / ONNX_FILE).write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(UserError, match="is not an ONNX model|cannot load"):
        Tagger.load(garbage)


def test_an_onnx_file_reading_other_files_or_custom_operators_is_refused(v1_int8, tmp_path):
    external = shutil.copytree(v1_int8, tmp_path / "external")
    model = onnx.load(str(external / ONNX_FILE))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.external_data.add(key="location", value="../../../etc/passwd")
    onnx.save(model, str(external / ONNX_FILE))
    with pytest.raises(UserError, match="is stored in another file, which is refused"):
        Tagger.load(external)

    custom = shutil.copytree(v1_int8, tmp_path / "custom")
    model = onnx.load(str(custom / ONNX_FILE))
    model.graph.node[0].domain = "evil.ops"
    model.opset_import.add(domain="evil.ops", version=1)
    onnx.save(model, str(custom / ONNX_FILE))
    with pytest.raises(UserError, match="needs operators of evil.ops, which are refused"):
        Tagger.load(custom)


def test_quantize_refuses_what_it_cannot_use(v1_int8, morphology, tmp_path):
    with pytest.raises(UserError, match="is already quantized"):
        quantize(str(v1_int8), str(morphology["dev"]), str(tmp_path / "again"), threads=1)
    with pytest.raises(UserError, match="--threads must be a positive whole number"):
        quantize(str(V1), str(morphology["dev"]), str(tmp_path / "t"), threads=0)
    unlabelled = tmp_path / "plain.conllu"
    unlabelled.write_text("1\tcat\t_\t_\t_\t_\t_\t_\t_\t_\n\n")
    with pytest.raises(UserError, match="no word has a value in the column 'upos'"):
        quantize(str(V1), str(unlabelled), str(tmp_path / "u"), threads=1)
