"""Exporting a checkpoint as a self-contained Hugging Face model directory, with a model card.

The directory loads with plain ``transformers`` (``AutoModelForTokenClassification``,
``pipeline("token-classification")``) and with :class:`nasty_lightning.Tagger`, which also reads
``nasty_lightning.json`` (label column, window size). Weights are written as safetensors.

The checkpoint is read as untrusted input (``nasty_lightning.formats.untrusted``): its tokenizer files must have the
names a tokenizer writes (``model_dir.TOKENIZER_FILES``), checked before anything is written. The folder is
built beside its place and swapped in whole (``nasty_lightning.formats.outputs``), so a failed export leaves an
earlier one as it was; files of an earlier export that export does not write (``model_dir.OWN_FILES``) stay.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from nasty_lightning.formats.model_dir import (
    CARD_FILE,
    CASING_FILE,
    CASINGS,
    CHARS_FILE,
    CHARS_META,
    CURVES_FILE,
    HEADS_FILE,
    LAYER_MIX_FILE,
    LEXICON_FILE,
    META_FILE,
    OWN_FILES,
    write_lexicon,
    write_meta,
)
from nasty_lightning.formats.outputs import atomic_dir, check_output_dir
from nasty_lightning.labels.heads import ALLTAGS, LabelSchema, metric_name, tag_columns


def export(ckpt_path: str, output_dir: str) -> Path:
    """Write a checkpoint as a model directory: safetensors weights, config with tag names, tokenizer, card.

    Args:
        ckpt_path: Checkpoint written by ``nasty-train fit`` (e.g. RUN/checkpoints/best.ckpt).
        output_dir: Directory to write: a new or empty one, or an earlier export, whose files are replaced
            (other files put there are kept).
    """
    return export_checkpoint(ckpt_path, output_dir, what="--output_dir")


def export_checkpoint(
    ckpt_path: str | Path,
    output_dir: str | Path,
    summary: dict[str, Any] | None = None,
    what: str = "export folder",
) -> Path:
    """Export ``ckpt_path`` to ``output_dir``; ``summary`` adds what only the end of ``fit`` knows
    (epochs run, whether early stopping ended it, test metrics); ``what`` names the folder in errors."""
    import torch  # here: --help needs no PyTorch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from nasty_lightning.formats.untrusted import load_checkpoint

    check_output_dir(output_dir, what, marker=META_FILE)
    ckpt = load_checkpoint(ckpt_path)  # refuses names that are not tokenizer files before anything is written
    data_state = ckpt["TaggingDataModule"]

    schema = LabelSchema.from_checkpoint(data_state)
    config = AutoConfig.for_model(**ckpt["hf_config"])
    auto = AutoModelForSequenceClassification if schema[0].is_sentence else AutoModelForTokenClassification
    with torch.device("meta"):  # no memory for weights that load_state_dict replaces
        model = auto.from_config(config)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True, assign=True)
    columns = schema.columns
    heads = {k.removeprefix("heads."): v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith("heads.")}
    casing = ckpt["state_dict"].get("casing.weight")
    mix = {k.removeprefix("layer_mix."): v for k, v in ckpt["state_dict"].items() if k.startswith("layer_mix.")}
    chars = {k.removeprefix("chars."): v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith("chars.")}
    meta = {
        "format": 1,
        "task": "text-classification" if schema[0].is_sentence else "token-classification",
        "label_column": columns[0],
        "max_length": data_state["max_length"],
        "long_sentences": "split at word boundaries into windows of at most max_length subwords",
        "labelled_subword": "first",
        "base_model": ckpt["hyper_parameters"]["model_name"],
    }
    meta |= schema.meta_heads()  # the first column's labels are the config's id2label
    if schema.multi_label:  # each label's threshold, chosen on the validation files
        meta["thresholds"] = ckpt.get("thresholds") or {h.column: [0.5] * len(h.vocab) for h in schema if h.multi_label}
    if schema.sentence_heads:
        meta["pooling"] = ckpt["hyper_parameters"].get("pooling", "first")
    if casing is not None:  # the class names, in id order: a model made with other classes is refused
        meta["casing"] = list(CASINGS)
    if chars:  # --model.chars: how words became character ids
        meta["chars"] = dict(CHARS_META)
    if mix:  # the heads read a mix of this many hidden states: plain transformers would read the last one
        meta["layer_mix"] = len(mix["weights"])
    learned = {k.removeprefix("transitions."): v for k, v in ckpt["state_dict"].items() if k.startswith("transitions.")}
    if learned:  # --model.crf: each IOB2 head's transition scores, by column
        meta["transitions"] = {
            columns[h]: {part: learned[f"{h}.{part}"].float().tolist() for part in ("start", "follow")}
            for h in sorted({int(k.split(".")[0]) for k in learned})
        }
    metrics_csv = Path(ckpt_path).resolve().parent.parent / "metrics.csv"
    step, epoch = ckpt["global_step"], ckpt.get("epoch", 0) + 1
    title = f"{', '.join(columns)} tagger from {meta['base_model']}: epoch {epoch}, step {step}"
    curves = plot_curves(metrics_csv, step, title) if metrics_csv.is_file() else None
    card = model_card(ckpt, schema, summary or {}, curves is not None)

    with atomic_dir(output_dir, OWN_FILES) as out:
        for name, content in ckpt["tokenizer_files"].items():  # first: nothing of the model's is written over
            (out / name).write_bytes(content)
        model.save_pretrained(out)
        if heads:
            save_file(heads, out / HEADS_FILE)
        if casing is not None:
            save_file({"weight": casing.contiguous()}, out / CASING_FILE)
        if mix:
            save_file({k: v.contiguous() for k, v in mix.items()}, out / LAYER_MIX_FILE)
        if chars:
            save_file(chars, out / CHARS_FILE)
        write_meta(out, meta)
        if data_state.get("lemma_lexicon"):
            write_lexicon(out, data_state["lemma_lexicon"])
        if curves is not None:
            (out / CURVES_FILE).write_bytes(curves)
        (out / CARD_FILE).write_text(card)
    return Path(output_dir)


def callback_state(ckpt: dict[str, Any], name: str, monitor: str | None = None) -> dict[str, Any]:
    """The saved state of the callback class ``name`` (monitoring ``monitor``, if given); empty if none."""
    for key, state in ckpt.get("callbacks", {}).items():
        if key.startswith(name) and (monitor is None or f"'monitor': '{monitor}'" in key):
            return state
    return {}


def _best_score(ckpt: dict[str, Any]) -> tuple[str, float] | None:
    """The metric the best checkpoint was chosen by, and its best value."""
    for key, state in ckpt.get("callbacks", {}).items():
        monitor = re.search(r"'monitor': '([^']+)'", key)
        if key.startswith("ModelCheckpoint") and monitor and state.get("best_model_score") is not None:
            return monitor[1], float(state["best_model_score"])
    return None


def _heads_section(schema: LabelSchema, scores: dict[str, float]) -> str:
    """One row per head: its column, its labels, and its validation accuracy at this checkpoint."""
    columns = schema.columns
    rows = ["| column | labels | validation accuracy at this checkpoint |", "|---|---|---|"]
    for head in schema:
        column, n = head.column, len(head.vocab)
        kind = f"{n} edit scripts from form to lemma" if head.is_lemma else f"{n} tags"
        kind = f"{n} labels of whole texts" if head.is_sentence else kind
        name = metric_name(columns, column)
        value = scores.get(name)
        # with several validation files, each file's too (val_acc/<file stem>)
        files = ", ".join(
            f"{k.removeprefix(name + '/')} {v:.4f}" for k, v in scores.items() if k.startswith(name + "/")
        )
        text = "n/a" if value is None else f"{value:.4f}" + (f" ({files})" if files else "")
        rows.append(f"| {column} | {kind} | {text} |")
    for column in columns:  # heads of IOB2 tags: entity F1, micro and per type
        name = "val_f1" if column == columns[0] else f"val_f1_{column}"
        if name in scores:
            kinds = ", ".join(
                f"{k.removeprefix(name + '_')} {v:.4f}"
                for k, v in scores.items()
                if k.startswith(name + "_") and "/" not in k
            )
            rows.append(f"| {column} entities | F1 over exact spans; per type: {kinds} | {scores[name]:.4f} |")
    if f"val_{ALLTAGS}" in scores:
        rows.append(f"| alltags | {', '.join(tag_columns(columns))} all right | {scores[f'val_{ALLTAGS}']:.4f} |")
    note = (
        f"The first column's head is the model's own classifier (`config.json` names its labels); the others are "
        f"linear layers on the same last hidden states, in `{HEADS_FILE}` (`<column>.weight`, `<column>.bias`), "
        f"their labels in `{META_FILE}`. `Tagger` predicts every column in one encoder pass."
    )
    return "## Heads\n\n" + "\n".join(rows) + "\n\n" + (note + "\n" if len(columns) > 1 else "")


def model_card(ckpt: dict[str, Any], schema: LabelSchema, summary: dict[str, Any], has_curves: bool) -> str:
    """The README.md of an exported model: what it was trained on, how, and how well."""
    hp, data_hp, data_state = ckpt["hyper_parameters"], ckpt["datamodule_hyper_parameters"], ckpt["TaggingDataModule"]
    columns = schema.columns
    record = callback_state(ckpt, "RunRecord")
    files = data_state.get("files", {})

    def file_row(name: str, paths: str | list[str] | None) -> str:
        if not paths:
            return f"| {name} | none |"
        described = []
        for path in [paths] if isinstance(paths, str) else paths:
            stats = files.get(path)
            size = f": {stats['sentences']:,} sentences, {stats['words']:,} words" if stats else ""
            described.append(f"`{path}`{size}")
        return f"| {name} | {'; '.join(described)} |"

    best = _best_score(ckpt)
    epochs = summary.get("epochs_run", ckpt.get("epoch", 0) + 1)
    stopped = " (stopped early)" if summary.get("stopped_early") else ""
    seconds = record.get("train_seconds")
    rows = [
        f"| base model | `{hp['model_name']}` |",
        f"| task | {'text' if schema[0].is_sentence else 'token'} classification of "
        f"{', '.join(f'`{c}`' for c in columns)} "
        f"({'one head' if len(columns) == 1 else f'{len(columns)} heads, one encoder'}) |",
        file_row("training data", data_hp.get("train_file")),
        file_row("validation data", data_hp.get("val_file")),
        f"| learning rate | {hp['learning_rate']} (AdamW, weight decay {hp['weight_decay']}, "
        f"linear warmup {hp['warmup_ratio']:.0%} then decay) |",
        f"| batch size | {data_hp['batch_size']} sentences |",
        f"| max length | {data_state['max_length']} subwords (longer sentences split into windows) |",
        f"| seed | {data_hp.get('seed')} |",
        f"| epochs run | {epochs}{stopped}; this checkpoint: epoch {ckpt.get('epoch', 0) + 1}, "
        f"step {ckpt.get('global_step')} |",
        f"| best checkpoint chosen by | {best[0]} = {best[1]:.4f} |" if best else "| best checkpoint chosen by | n/a |",
    ]
    for name, value in sorted(summary.get("test", {}).items()):
        rows.append(f"| {name} | {value:.4f} |")
    if seconds is not None:
        rows.append(f"| training time | {seconds / 60:.1f} min |")
    if record.get("hardware"):
        rows.append(f"| hardware | {record['hardware']} |")
    if record.get("precision"):
        rows.append(f"| training precision | {record['precision']} |")
    if record.get("versions"):
        rows.append("| libraries | " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + " |")
    first = ", ".join(f"`{label}`" for label in schema[0].vocab.labels)
    parts = [
        f"# {', '.join(columns)} {'classifier' if schema[0].is_sentence else 'tagger'} fine-tuned from "
        f"{hp['model_name']}\n",
        "Fine-tuned with nasty-lightning on CoNLL-U data.\n",
        "| | |\n|---|---|\n" + "\n".join(rows) + "\n",
    ]
    if record.get("command"):
        parts.append(f"## Reproduce\n\n```bash\n{record['command']}\n```\n")
    if schema[0].is_sentence:
        parts.append(_text_use(hp.get("pooling", "first")))
    elif hp.get("layer_mix") or hp.get("chars"):
        reads = {"layer_mix": f"a learned mix of the encoder's layers (`{LAYER_MIX_FILE}`)",
                 "chars": f"a network of each word's characters (`{CHARS_FILE}`)"}  # fmt: skip
        parts.append(
            "## Use\n\n```python\nfrom nasty_lightning import Tagger\n\n"
            'tagger = Tagger.load("THIS_DIRECTORY")\nprint(tagger.tag("The cat sat on the mat."))\n```\n\n'
            f"Its heads read {' and '.join(v for k, v in reads.items() if hp.get(k))}, which only `Tagger` "
            "computes: plain transformers loads the encoder and its classifier alone, and its tags are not this "
            "model's.\n"
        )
    else:
        parts.append(
            "## Use\n\n```python\nfrom nasty_lightning import Tagger\n\n"
            'tagger = Tagger.load("THIS_DIRECTORY")\nprint(tagger.tag("The cat sat on the mat."))\n```\n\n'
            "or with plain transformers, on pre-split words (the tag of a word is that of its first subword):\n\n"
            '```python\nfrom transformers import pipeline\n\ntagger = pipeline("token-classification", '
            'model="THIS_DIRECTORY", ignore_labels=[])\nprint(tagger([["The", "cat", "sat", "."]], '
            "is_split_into_words=True))\n```\n"
        )
    if hp.get("crf"):
        parts.append(
            "Its entity tags are the best sequence under learned transition scores (`transitions` in "
            "`nasty_lightning.json`), which only `Tagger` applies: plain transformers takes each word's best tag.\n"
        )
    if data_state.get("lemma_lexicon"):
        parts.append(
            f"Its lemmas are edit scripts checked against the lemmas training gave each word (`{LEXICON_FILE}`): "
            "`Tagger` replaces a lemma a word seen in training never had there by its most frequent one.\n"
        )
    parts.append(_heads_section(schema, ckpt.get("validation_scores", {})))
    parts.append(f"## Labels of {columns[0]}\n\n{first}\n")
    if has_curves:
        parts.append(f"## Training curves\n\n![training loss and validation accuracy]({CURVES_FILE})\n")
    return "\n".join(parts)


def _text_use(pooling: str) -> str:
    """The card's section on using a model whose first column labels texts."""
    use = (
        "## Use\n\n```python\nfrom nasty_lightning import Tagger\n\n"
        'classifier = Tagger.load("THIS_DIRECTORY")\nprint(classifier.classify(["The cat sat on the mat."]))\n```\n\n'
    )
    if pooling == "mean":
        return use + (
            "This model pools the mean of its subwords into its classifier layer, which only `Tagger` computes: "
            'plain transformers\' `pipeline("text-classification")` loads it but pools the first token, and '
            "its labels are not this model's.\n"
        )
    return use + (
        "or with plain transformers, which give the same labels:\n\n"
        '```python\nfrom transformers import pipeline\n\nclassifier = pipeline("text-classification", '
        'model="THIS_DIRECTORY")\nprint(classifier(["The cat sat on the mat."]))\n```\n'
    )


Points = list[tuple[int, float]]


def curve_points(metrics_csv: Path, global_step: int) -> tuple[Points, Points]:
    """Training loss and validation accuracy by step, from Lightning's CSV log, as they were when the
    checkpoint at ``global_step`` was saved.

    Lightning logs a batch's metrics, and those of a validation run after it, at the number of steps done
    before that batch, so the rows of a checkpoint saved after N steps have steps below N; the rows after
    them are the training that went on after the checkpoint (later epochs of the same run).
    """
    train: Points = []
    val: Points = []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if step >= global_step:
                continue
            if row.get("train_loss"):
                train.append((step, float(row["train_loss"])))
            if row.get("val_acc"):
                val.append((step, float(row["val_acc"])))
    return train, val


def plot_curves(metrics_csv: Path, global_step: int, title: str = "") -> bytes | None:
    """A PNG of training loss and validation accuracy over the steps up to the checkpoint at ``global_step``
    (``curve_points``); None if nothing was logged by then. Points are marked, so that a short run's few
    points show."""
    train, val = curve_points(metrics_csv, global_step)
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, loss_axis = plt.subplots(figsize=(7, 4), layout="constrained")
    if train:
        marker = "." if len(train) <= 200 else ""
        loss_axis.plot(*zip(*train, strict=True), marker=marker, color="tab:blue", label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss" if train else "training loss (none logged)", color="tab:blue")
    acc_axis = loss_axis.twinx()
    if val:
        acc_axis.plot(*zip(*val, strict=True), "o-", color="tab:orange", label="validation accuracy")
    acc_axis.set_ylabel("validation accuracy", color="tab:orange")
    loss_axis.set_title(title, fontsize=10, wrap=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()
