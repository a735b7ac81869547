"""Exporting a checkpoint as a self-contained Hugging Face model directory, with a model card.

The directory loads with plain ``transformers`` (``AutoModelForTokenClassification``,
``pipeline("token-classification")``) and with :class:`nasty_lightning.Tagger`, which also reads
``nasty_lightning.json`` (label column, window size). Weights are written as safetensors.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForTokenClassification

from nasty_lightning.errors import UserError
from nasty_lightning.inference import META_FILE

CARD_FILE = "README.md"
CURVES_FILE = "training_curves.png"


def load_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A nasty-lightning checkpoint, loaded as plain tensors and data (``weights_only``: no code runs)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # mmap: tensors are read from the file when used, so the optimizer state of a checkpoint costs no memory
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise UserError(f"{path} is not a readable checkpoint ({err.__class__.__name__})") from None
    missing = [key for key in ("state_dict", "hf_config", "tokenizer_files", "TaggingDataModule") if key not in ckpt]
    if missing:
        raise UserError(f"{path} is not a nasty-lightning checkpoint: missing {', '.join(missing)}")
    return ckpt


def export(ckpt_path: str, output_dir: str) -> Path:
    """Write a checkpoint as a model directory: safetensors weights, config with tag names, tokenizer, card.

    Args:
        ckpt_path: Checkpoint written by ``nasty-train fit`` (e.g. RUN/checkpoints/best.ckpt).
        output_dir: Directory to create (its files are replaced).
    """
    return export_checkpoint(ckpt_path, output_dir)


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Export ``ckpt_path`` to ``output_dir``; ``summary`` adds what only the end of ``fit`` knows
    (epochs run, whether early stopping ended it, test metrics)."""
    ckpt = load_checkpoint(ckpt_path)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_state = ckpt["TaggingDataModule"]

    config = AutoConfig.for_model(**ckpt["hf_config"])
    with torch.device("meta"):  # no memory for weights that load_state_dict replaces
        model = AutoModelForTokenClassification.from_config(config)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True, assign=True)
    model.save_pretrained(out)
    for name, content in ckpt["tokenizer_files"].items():
        (out / name).write_bytes(content)
    meta = {
        "format": 1,
        "task": "token-classification",
        "label_column": data_state["label_column"],
        "max_length": data_state["max_length"],
        "long_sentences": "split at word boundaries into windows of at most max_length subwords",
        "labelled_subword": "first",
        "base_model": ckpt["hyper_parameters"]["model_name"],
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    metrics_csv = Path(ckpt_path).resolve().parent.parent / "metrics.csv"
    has_curves = metrics_csv.is_file() and plot_curves(metrics_csv, out / CURVES_FILE)
    (out / CARD_FILE).write_text(model_card(ckpt, config.id2label, summary or {}, has_curves))
    return out


def callback_state(ckpt: dict[str, Any], name: str, monitor: str | None = None) -> dict[str, Any]:
    """The saved state of the callback class ``name`` (monitoring ``monitor``, if given); empty if none."""
    for key, state in ckpt.get("callbacks", {}).items():
        if key.startswith(name) and (monitor is None or f"'monitor': '{monitor}'" in key):
            return state
    return {}


def _best_score(ckpt: dict[str, Any]) -> float | None:
    score = callback_state(ckpt, "ModelCheckpoint", "val_acc").get("best_model_score")
    return None if score is None else float(score)


def model_card(ckpt: dict[str, Any], id2label: dict[int, str], summary: dict[str, Any], has_curves: bool) -> str:
    """The README.md of an exported model: what it was trained on, how, and how well."""
    hp, data_hp, data_state = ckpt["hyper_parameters"], ckpt["datamodule_hyper_parameters"], ckpt["TaggingDataModule"]
    record = callback_state(ckpt, "RunRecord")
    files = data_state.get("files", {})

    def file_row(name: str, path: str | None) -> str:
        if not path:
            return f"| {name} | none |"
        stats = files.get(path)
        size = f": {stats['sentences']:,} sentences, {stats['words']:,} words" if stats else ""
        return f"| {name} | `{path}`{size} |"

    best = _best_score(ckpt)
    epochs = summary.get("epochs_run", ckpt.get("epoch", 0) + 1)
    stopped = " (stopped early)" if summary.get("stopped_early") else ""
    seconds = record.get("train_seconds")
    rows = [
        f"| base model | `{hp['model_name']}` |",
        f"| task | token classification of the `{data_state['label_column']}` column, {len(id2label)} labels |",
        file_row("training data", data_hp.get("train_file")),
        file_row("validation data", data_hp.get("val_file")),
        f"| learning rate | {hp['learning_rate']} (AdamW, weight decay {hp['weight_decay']}, "
        f"linear warmup {hp['warmup_ratio']:.0%} then decay) |",
        f"| batch size | {data_hp['batch_size']} sentences |",
        f"| max length | {data_state['max_length']} subwords (longer sentences split into windows) |",
        f"| seed | {data_hp.get('seed')} |",
        f"| epochs run | {epochs}{stopped}; this checkpoint: epoch {ckpt.get('epoch', 0) + 1}, "
        f"step {ckpt.get('global_step')} |",
        f"| best validation accuracy | {best:.4f} |" if best is not None else "| best validation accuracy | n/a |",
    ]
    for name, value in sorted(summary.get("test", {}).items()):
        rows.append(f"| {name} | {value:.4f} |")
    if seconds is not None:
        rows.append(f"| training time | {seconds / 60:.1f} min |")
    if record.get("hardware"):
        rows.append(f"| hardware | {record['hardware']} |")
    if record.get("versions"):
        rows.append("| libraries | " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + " |")
    labels = ", ".join(f"`{id2label[i]}`" for i in range(len(id2label)))
    parts = [
        f"# {data_state['label_column']} tagger fine-tuned from {hp['model_name']}\n",
        "Fine-tuned with nasty-lightning on CoNLL-U data.\n",
        "| | |\n|---|---|\n" + "\n".join(rows) + "\n",
    ]
    if record.get("command"):
        parts.append(f"## Reproduce\n\n```bash\n{record['command']}\n```\n")
    parts.append(
        "## Use\n\n```python\nfrom nasty_lightning import Tagger\n\n"
        'tagger = Tagger.load("THIS_DIRECTORY")\nprint(tagger.tag("The cat sat on the mat."))\n```\n\n'
        "or with plain transformers, on pre-split words (the tag of a word is that of its first subword):\n\n"
        '```python\nfrom transformers import pipeline\n\ntagger = pipeline("token-classification", '
        'model="THIS_DIRECTORY", ignore_labels=[])\nprint(tagger([["The", "cat", "sat", "."]], '
        "is_split_into_words=True))\n```\n"
    )
    parts.append(f"## Labels\n\n{labels}\n")
    if has_curves:
        parts.append(f"## Training curves\n\n![training loss and validation accuracy]({CURVES_FILE})\n")
    return "\n".join(parts)


def plot_curves(metrics_csv: Path, png: Path) -> bool:
    """Training loss and validation accuracy over steps, from Lightning's CSV log; False if nothing to plot."""
    train, val = [], []
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("train_loss"):
                train.append((int(row["step"]), float(row["train_loss"])))
            if row.get("val_acc"):
                val.append((int(row["step"]), float(row["val_acc"])))
    if not train and not val:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, loss_axis = plt.subplots(figsize=(7, 4))
    if train:
        loss_axis.plot(*zip(*train, strict=True), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    acc_axis = loss_axis.twinx()
    if val:
        acc_axis.plot(*zip(*val, strict=True), "o-", color="tab:orange", label="validation accuracy")
    acc_axis.set_ylabel("validation accuracy", color="tab:orange")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True
