"""``nasty-train quantize``: an INT8 copy of an exported model, checked on a labelled file before it is written.

The encoder and every head (``modelling.network.Network``) are exported as one ONNX graph and quantized with ONNX
Runtime's dynamic quantization: the weights of every matrix multiplication become INT8 with a scale per
output channel, the embedding tables INT8 too, and activations are quantized batch by batch as the model
runs. That scheme was chosen by measurement on EWT dev against PyTorch's own dynamic quantization, ONNX
Runtime's static quantization calibrated on sentences and per-tensor weights (docs/benchmarks.md): it lost
the least accuracy, and each faster one lost four to six times as much. Dynamic quantization needs no
activation statistics, so the calibration file serves as the check: the model is scored on it before
and after, and a copy that loses more than ``--max_accuracy_drop`` points on any column is not written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nasty_lightning.errors import UserError
from nasty_lightning.formats.model_dir import (
    CARD_FILE,
    META_FILE,
    ONNX_FILE,
    OWN_FILES,
    QUANTIZATION,
    write_lexicon,
    write_meta,
)
from nasty_lightning.formats.outputs import atomic_dir, check_output_dir
from nasty_lightning.modelling.precision import cpu_info

METHOD = "ONNX Runtime dynamic quantization"


def quantize(
    model_dir: str,
    calibration_file: str,
    output_dir: str,
    max_accuracy_drop: float = 1.0,
    force: bool = False,
    per_channel: bool = True,
    batch_size: int = 64,
    threads: int | None = None,
    text_column: str = "text",
) -> dict[str, Any]:
    """Write an INT8 copy of an exported model (ONNX Runtime, dynamic quantization), after checking it.

    Prints the size, the accuracy of every column on the calibration file and the sentences tagged per
    second, before and after. The copy is a model directory like any other for ``tag``, ``eval``, ``serve``
    and ``Tagger.load``; it holds an ONNX graph (tensors and standard operators), no pickle.

    Args:
        model_dir: Model directory written by ``fit`` (RUN/model) or ``nasty-train export``.
        calibration_file: Labelled file, with the columns the model predicts, that both models are scored on
            (a few hundred sentences from the training domain; the dev file will do): CoNLL-U (or IOB2), or for
            a model that labels texts a TSV, CSV or JSON Lines file of labelled texts.
        output_dir: Directory to write, not ``model_dir`` nor a folder in or around it: a new or empty one, or
            an earlier output, whose files are replaced (other files put there are kept).
        max_accuracy_drop: Most accuracy, in points (0.5 = half a percentage point), that any column may
            lose on the calibration file; a copy that loses more is not written.
        force: Write the copy even when it loses more than ``max_accuracy_drop``.
        per_channel: Weights of matrix multiplications with one scale per output channel; false: one per
            tensor, faster at batch-of-one but less accurate (MiniLM on EWT: 0.39 points of UPOS lost
            instead of 0.09; docs/benchmarks.md).
        batch_size: Sentences per forward pass while scoring.
        threads: CPU threads for both models (default: the cores this process may use, at most 4).
        text_column: In a calibration file of labelled texts, the column or key of the text.
    """
    from nasty_lightning.formats.texts import read_labelled
    from nasty_lightning.inference.runtime import check_batch_size, use_threads
    from nasty_lightning.inference.tagger import Tagger

    check_batch_size(batch_size)
    threads = use_threads(threads)
    source_dir, out_dir = Path(model_dir).resolve(), Path(output_dir).resolve()
    if out_dir == source_dir or source_dir in out_dir.parents or out_dir in source_dir.parents:
        raise UserError(
            f"--output_dir {output_dir} is --model_dir {model_dir}, or a folder in or around it: "
            "give the INT8 copy a folder of its own"
        )
    check_output_dir(output_dir, "--output_dir", marker=META_FILE)
    source = Tagger.load(model_dir, batch_size=batch_size, threads=threads)
    if source.onnx is not None:
        raise UserError(f"{model_dir} is already quantized: give the model directory it was made from")
    sentences = read_labelled(calibration_file, tuple(source.columns), text_column)
    source.heads.check_gold(calibration_file, sentences)
    before = _measure(source, sentences, Path(model_dir))
    with atomic_dir(output_dir, OWN_FILES) as out:
        _write_int8(source, out, per_channel)
        after = _measure(Tagger.load(out, batch_size=batch_size, threads=threads), sentences, out)
        drops = {c: 100 * (before["accuracy"][c] - after["accuracy"][c]) for c in source.columns}
        record = _record(model_dir, calibration_file, len(sentences), threads, per_channel, before, after)
        print(_table(source.columns, before, after, drops))
        worst = max(drops, key=drops.get)
        if drops[worst] > max_accuracy_drop and not force:
            raise UserError(
                f"the INT8 model loses {drops[worst]:.2f} points of {worst} accuracy on {calibration_file}, more "
                f"than --max_accuracy_drop {max_accuracy_drop}: nothing written (--force true writes it anyway)"
            )
        _write_meta(source, out, record)
        (out / CARD_FILE).write_text(_card(source.meta, record))
    print(f"wrote {output_dir}")
    return record


def quantize_network(source: Any, path: Path, per_channel: bool = True) -> None:
    """Write the encoder and heads of ``source`` (a float ``Tagger``) to ``path`` as an INT8 ONNX graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nasty_lightning.inference.onnx_model import quiet_onnx_export, write_onnx
    from nasty_lightning.modelling.network import Network

    float_path = path.with_name(f".{path.name}.float32")
    try:
        with quiet_onnx_export():
            pooling = source.meta.get("pooling", "first")
            network = Network(source.model, source.layers, source.casing, pooling, source.mix, source.chars)
            write_onnx(network, float_path)
            quantize_dynamic(
                float_path,
                path,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                op_types_to_quantize=["MatMul", "Gather"],
            )
    finally:
        float_path.unlink(missing_ok=True)


def _write_int8(source: Any, out: Path, per_channel: bool) -> None:
    """The ONNX graph of ``source`` quantized into ``out``, with its config, tokenizer and metadata."""
    quantize_network(source, out / ONNX_FILE, per_channel)
    write_graph_companions(source, out, {"method": METHOD})


def write_graph_companions(source: Any, out: Path, quantization: dict[str, Any]) -> None:
    """Beside an ONNX graph of ``source`` in ``out``: its config (labels), tokenizer and metadata, with the
    ``quantization`` record that makes ``Tagger.load`` read the graph."""
    source.model.config.save_pretrained(out)
    source.tokenizer.save_pretrained(out)
    if source.lexicon is not None:
        write_lexicon(out, source.lexicon.to_dict())
    _write_meta(source, out, quantization)


def _write_meta(source: Any, out: Path, quantization: dict[str, Any]) -> None:
    write_meta(out, {**source.meta, QUANTIZATION: quantization})


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _measure(tagger: Any, sentences: list[Any], folder: Path) -> dict[str, Any]:
    """Accuracy of every column on ``sentences``, sentences tagged per second, and the folder's size."""
    from nasty_lightning.labels.scoring import column_scores

    words = [s.words for s in sentences]
    tagger.predict(words[: tagger.batch_size])  # warm up: first-call costs are not throughput
    start = time.perf_counter()
    predicted = tagger.predict(words, progress=True)
    seconds = time.perf_counter() - start
    columns, _ = column_scores(tagger.heads, sentences, predicted)
    return {
        "accuracy": {c: scores["accuracy"] for c, scores in columns.items()},
        "sentences_per_second": len(sentences) / seconds,
        "size_bytes": _size(folder),
    }


def _record(
    model_dir: str,
    calibration_file: str,
    n: int,
    threads: int,
    per_channel: bool,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """What the quantized model's metadata and card say about how it was made and what it measured."""
    import onnxruntime

    return {
        "method": METHOD,
        "weights": f"int8: matrix multiplications per {'output channel' if per_channel else 'tensor'}, "
        "embedding tables per tensor",
        "activations": "uint8, scaled per batch as the model runs",
        "onnxruntime": onnxruntime.__version__,
        "source_model": str(model_dir),
        "calibration_file": str(calibration_file),
        "calibration_sentences": n,
        "threads": threads,
        "cpu": cpu_info()[0] or "unknown",
        "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "float32": before,
        "int8": after,
    }


def _table(columns: list[str], before: dict[str, Any], after: dict[str, Any], drops: dict[str, float]) -> str:
    header = ["model", "size", *(f"{c} accuracy" for c in columns), "sentences/s"]
    rows = [header]
    for name, m in (("float32", before), ("int8", after)):
        cells = [f"{100 * m['accuracy'][c]:.2f}" for c in columns]
        if m is after:
            cells = [f"{cell} ({-drops[c]:+.2f})" for cell, c in zip(cells, columns, strict=True)]
        rows.append([name, f"{m['size_bytes'] / 1e6:.1f} MB", *cells, f"{m['sentences_per_second']:.0f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    smaller = before["size_bytes"] / after["size_bytes"]
    faster = after["sentences_per_second"] / before["sentences_per_second"]
    size = f"{smaller:.2f}x smaller" if smaller >= 1 else f"{1 / smaller:.2f}x larger"
    return "\n".join([*lines, f"{size}, {faster:.2f}x the sentences per second"])


def _card(meta: dict[str, Any], record: dict[str, Any]) -> str:
    before, after = record["float32"], record["int8"]
    rows = "\n".join(
        f"| {c} accuracy | {100 * before['accuracy'][c]:.2f} | {100 * after['accuracy'][c]:.2f} |"
        for c in before["accuracy"]
    )
    return f"""# {meta["label_column"]} tagger from {meta.get("base_model", "an encoder")}, quantized to INT8

Quantized by `nasty-train quantize` from `{record["source_model"]}`: {record["method"]}
(onnxruntime {record["onnxruntime"]}). Weights: {record["weights"]}. Activations: {record["activations"]}.
The encoder and every head are one ONNX graph, `{ONNX_FILE}`; labels, window size and the rest are in
`{META_FILE}`, as for the float32 model.

Measured on `{record["calibration_file"]}` ({record["calibration_sentences"]} sentences, {record["threads"]} threads):

| | float32 | int8 |
|---|---|---|
| size | {before["size_bytes"] / 1e6:.1f} MB | {after["size_bytes"] / 1e6:.1f} MB |
{rows}
| sentences per second | {before["sentences_per_second"]:.0f} | {after["sentences_per_second"]:.0f} |

The sizes and accuracies hold anywhere. The speeds are one measurement, on the machine that quantized the model
({record.get("cpu", "CPU not recorded")}{_load(record)}): they change with the CPU (INT8 gains most where it has
AVX512-VNNI or AMX) and with whatever else runs on it. Measure yours with `nasty-train tag`, which prints its
words per second.

## Use

```python
from nasty_lightning import Tagger

tagger = Tagger.load("THIS_DIRECTORY")
print(tagger.tag("The cat sat on the mat."))
```

or `nasty-train tag --model_dir THIS_DIRECTORY --input FILE`, `nasty-train eval`, `nasty-train serve`.
Plain `transformers` cannot load this directory: it holds no PyTorch weights.
"""


def _load(record: dict[str, Any]) -> str:
    """``, load 1.52``: the machine's one-minute load average when it measured, where recorded."""
    return "" if record.get("load") is None else f", load average {record['load']:g} while measuring"
