"""Training and tagging speed of nasty-train against plain Hugging Face, on the same machine and data.

    python scripts/benchmark.py compare --train_file ../shared/data/ud/en_ewt/en_ewt-ud-train.conllu \\
        --dev_file ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --subset 2000 --seeds 1
    python scripts/benchmark.py options --train_file ... --dev_file ... --seeds 3 \\
        --variants '["--trainer.precision bf16-mixed", "--data.num_workers 1"]'

``compare`` fine-tunes the same model on the same first ``subset`` training sentences with (a) the
``transformers`` token-classification recipe (``Trainer``, random batches padded to the longest sentence,
first-subword labels, as ``run_ner.py``) at its defaults, in bf16 and in bf16 with length-grouped batches,
and (b) ``nasty-train fit`` at its defaults and in 32-true; then tags the dev file with (a)
``pipeline("token-classification")`` on pre-split words at its default batch size and at 64 (float32 and
bf16), and (b) ``nasty-train tag`` in float32 and bf16, all with the model (b) trained. Each run is a fresh
process with the same thread count, timed whole (wall) and inside (training or tagging alone); the arms are
interleaved round by round. Prints one table (with achieved FLOP/s against the machine's measured
matrix-multiply peak) and ratios.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jsonargparse import auto_cli
from split_conllu import write_first


def _peak_rss_mb(child: bool = False) -> float:
    """This process's peak resident memory, or with ``child`` that of the largest process it waited for."""
    return resource.getrusage(resource.RUSAGE_CHILDREN if child else resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(child: bool = False, **values) -> None:
    """The measurement, for ``_worker``; ``child``: the work was done by a process this one ran."""
    print("RESULT " + json.dumps({**values, "peak_rss_mb": _peak_rss_mb(child)}), flush=True)


def _trainer_rows(sentences, tokenizer, column: str, label_ids: dict[str, int]) -> list[dict]:
    """run_ner.py's encoding: truncated at 512 subwords, the label on each word's first subword, -100 elsewhere."""
    rows = []
    for s in sentences:
        enc = tokenizer(s.words, is_split_into_words=True, truncation=True, max_length=512)
        word_ids, previous, row_labels = enc.word_ids(), None, []
        for w in word_ids:
            tag = s.labels(column)[w] if w is not None else None
            row_labels.append(label_ids.get(tag, -100) if w is not None and w != previous else -100)
            previous = w
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": row_labels})
    return rows


def _trainer_setup(train_file: str, dev_file: str, model: str, column: str, seed: int) -> tuple:
    """run_ner.py's preparation: the training file's labels, both files encoded by ``_trainer_rows``, and the
    model, built after ``set_seed`` as run_ner.py builds it (its new classifier head is random). Returns
    (train sentences, dev sentences, labels, tokenizer, train rows, dev rows, model)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, set_seed

    from nasty_lightning.formats.conllu import read_sentences
    from nasty_lightning.formats.presets import resolve_model_name

    train, dev = read_sentences(train_file), read_sentences(dev_file)
    labels = sorted({t for s in train for t in s.labels(column) if t})
    label_ids = {t: i for i, t in enumerate(labels)}
    path = resolve_model_name(model)
    tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    rows = _trainer_rows(train, tokenizer, column, label_ids), _trainer_rows(dev, tokenizer, column, label_ids)
    set_seed(seed)
    built = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_ids
    )
    return train, dev, labels, tokenizer, *rows, built


def trainer_fit(
    train_file: str,
    dev_file: str,
    model: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    bf16: bool = False,
    group_by_length: bool = False,
) -> None:
    """(a) The transformers recipe: Trainer defaults, random batches, first-subword labels; with ``bf16``, its
    bfloat16 mixed precision, and with ``group_by_length`` its length-grouped batches (its best settings)."""
    import numpy as np
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    train, _, _, tokenizer, train_rows, dev_rows, model_ = _trainer_setup(train_file, dev_file, model, "upos", seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size,
            learning_rate=learning_rate,
            num_train_epochs=epochs,
            seed=seed,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            bf16=bf16,
            # "random" is the default; transformers 4 called these group_by_length=False / True
            train_sampling_strategy="group_by_length" if group_by_length else "random",
        )
        trainer = Trainer(
            model=model_,
            args=args,
            train_dataset=train_rows,
            data_collator=DataCollatorForTokenClassification(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        # with group_by_length the Trainer predicts in length-grouped order too: back to the rows' order
        trainer.args.train_sampling_strategy = "random"
        predictions = trainer.predict(dev_rows)
    gold = np.concatenate([np.array(r["labels"]) for r in dev_rows])
    logits = np.concatenate([p[: len(r["labels"])] for p, r in zip(predictions.predictions, dev_rows, strict=True)])
    mask = gold != -100
    accuracy = float((logits.argmax(-1)[mask] == gold[mask]).mean())
    words = sum(len(s.words) for s in train) * epochs
    _report(words=words, seconds=seconds, accuracy=accuracy)


def ours_fit(
    train_file: str,
    dev_file: str,
    model: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    run_dir: str,
    options: str = "",
) -> None:
    """(b) nasty-train fit with the same settings (plus ``options``, more nasty-train arguments); training
    time excludes the validation passes. Runs as the ``nasty-train`` program does (``cli.entry``)."""
    from nasty_lightning.commands.cli import entry

    sys.argv = [
        "nasty-train",
        "fit",
        "--model.model_name",
        model,
        "--data.train_file",
        train_file,
        "--data.val_file",
        dev_file,
        "--trainer.max_epochs",
        str(epochs),
        "--data.batch_size",
        str(batch_size),
        "--model.learning_rate",
        str(learning_rate),
        "--seed_everything",
        str(seed),
        "--validation.every_n_steps",
        "0",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        run_dir,
        *shlex.split(options),
    ]
    entry()
    from nasty_lightning.formats.conllu import read_sentences
    from nasty_lightning.formats.untrusted import load_checkpoint
    from nasty_lightning.inference.export import callback_state

    ckpt = load_checkpoint(Path(run_dir) / "checkpoints" / "last.ckpt")
    record = callback_state(ckpt, "RunRecord")
    monitor = callback_state(ckpt, "ModelCheckpoint", "val_acc")
    words = sum(len(s.words) for s in read_sentences(train_file)) * epochs
    seconds = record["train_seconds"] - record["validation_seconds"]
    _report(words=words, seconds=seconds, accuracy=float(monitor["current_score"]))


def pipeline_tag(model_dir: str, dev_file: str, batch_size: int | None = None, bf16: bool = False) -> None:
    """(a) pipeline("token-classification") on pre-split words, at its default batch size or ``batch_size``;
    ``bf16``: the weights in bfloat16 (its ``dtype`` option)."""
    import torch
    from transformers import AutoTokenizer, pipeline

    from nasty_lightning.formats.conllu import read_sentences

    sentences = read_sentences(dev_file)
    words = [s.words for s in sentences]
    dtype = torch.bfloat16 if bf16 else torch.float32
    tagger = pipeline("token-classification", model=model_dir, ignore_labels=[], dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    start = time.perf_counter()
    outputs = tagger(words, is_split_into_words=True, **({"batch_size": batch_size} if batch_size else {}))
    seconds = time.perf_counter() - start
    correct = total = 0
    for sentence, entities in zip(sentences, outputs, strict=True):
        word_ids = tokenizer(sentence.words, is_split_into_words=True).word_ids()
        by_index = {e["index"]: e["entity"] for e in entities}
        previous = None
        tags = []
        for i, w in enumerate(word_ids):
            if w is not None and w != previous:
                tags.append(by_index[i])
            previous = w
        gold = sentence.labels("upos")
        correct += sum(g == t for g, t in zip(gold, tags, strict=True) if g)
        total += sum(1 for g in gold if g)
    _report(words=sum(map(len, words)), seconds=seconds, accuracy=correct / total)


def ours_tag(model_dir: str, dev_file: str, precision: str = "float32") -> None:
    """(b) the ``nasty-train tag`` command on the dev file, weights in ``precision``; its tagging time is the one
    it reports (the model's work, as the pipeline's: loading and reading not counted), its whole time that of
    the ``nasty-train tag`` process."""
    from nasty_lightning.formats.conllu import read_sentences

    with tempfile.TemporaryDirectory() as tmp:
        tagged = Path(tmp) / "tagged.conllu"
        threads = ["--threads", os.environ["OMP_NUM_THREADS"]] if "OMP_NUM_THREADS" in os.environ else []
        command = [str(Path(sys.executable).with_name("nasty-train")), "tag", "--model_dir", model_dir]
        command += ["--input", dev_file, "--output", str(tagged), "--precision", precision, *threads]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        command_wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"nasty-train tag failed:\n{done.stderr[-3000:]}")
        seconds = float(re.search(r"tagged .* in ([\d.]+) s", done.stderr)[1])
        predicted = read_sentences(str(tagged))
    sentences = read_sentences(dev_file)
    pairs = [
        (g, t)
        for s, tags in zip(sentences, predicted, strict=True)
        for g, t in zip(s.labels("upos"), tags.labels("upos"), strict=True)
        if g
    ]
    words = sum(len(s.words) for s in sentences)
    accuracy = sum(g == t for g, t in pairs) / len(pairs)
    _report(words=words, seconds=seconds, accuracy=accuracy, command_wall=command_wall, child=True)


def _worker(threads: int, command: str, **kwargs) -> dict:
    """Run one measurement in a fresh process and return what it reported, with the process's whole wall
    time (start-up, imports and loading included) as ``wall``."""
    args = [sys.executable, __file__, command] + [f"--{k}={v}" for k, v in kwargs.items()]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    # a worker that runs a command in a process of its own (ours_tag) reports that process's wall time: the
    # worker's own start and its scoring of the output are the benchmark's, not the command's
    result["wall"] = result.pop("command_wall", wall)
    return result


def _fit_settings(tmp: str, train_file: str, subset: int, **settings) -> dict:
    """The arguments every fit worker gets: the first ``subset`` training sentences, copied into ``tmp``."""
    return {"train_file": str(write_first(train_file, subset, Path(tmp) / "train.conllu")), **settings}


def _mean(results: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in results)


def _words_per_second(results: list[dict]) -> float:
    return sum(r["words"] for r in results) / sum(r["seconds"] for r in results)


def peak(size: int = 2048, seconds: float = 2.0, bf16: bool = True) -> None:
    """The machine's matrix-multiply rate in FLOP/s, float32 and (with ``bf16``) bfloat16: the best of repeated
    products of two ``size`` x ``size`` matrices over ``seconds`` each. Emulated bfloat16 is not a peak worth
    measuring: one such product took 57 s on a thread of an AVX2-only CPU."""
    import torch

    rates = {}
    for name, dtype in (("float32", torch.float32), ("bf16", torch.bfloat16))[: 2 if bf16 else 1]:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # warm-up
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * size**3 / (time.perf_counter() - start))
        rates[name] = best
    _report(**rates)


def _work(model: str, files: dict[str, str]) -> tuple[int, dict[str, int]]:
    """The encoder's parameters outside its embeddings (and pooler), and the real subwords of each file (special
    tokens included, padding not; 512 at most a sentence, as both recipes encode them)."""
    from transformers import AutoModel, AutoTokenizer

    from nasty_lightning.formats.conllu import read_sentences
    from nasty_lightning.formats.presets import resolve_model_name

    path = resolve_model_name(model)
    encoder = AutoModel.from_pretrained(path)
    params = sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" not in n and "pooler" not in n)
    tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    subwords = {
        key: sum(
            len(tokenizer(s.words, is_split_into_words=True, truncation=True, max_length=512)["input_ids"])
            for s in read_sentences(path_)
        )
        for key, path_ in files.items()
    }
    return params, subwords


def compare(
    train_file: str,
    dev_file: str,
    model: str = "minilm",
    subset: int = 2000,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    seeds: int = 1,
    threads: int | None = None,
) -> None:
    """Fine-tune and tag with both recipes, each peer at its defaults and at its best settings on this machine,
    interleaved; print whole-process and inner times, subwords/s, achieved FLOP/s against the measured
    matrix-multiply peak, peak RSS, accuracy and ratios.

    Arms: the Trainer at its defaults (float32), with ``bf16=True`` and with bf16 and
    ``train_sampling_strategy="group_by_length"``; ``nasty-train fit`` at its defaults (bf16-mixed where native)
    and in 32-true; ``pipeline`` at its default batch size and at ``batch_size=64`` (float32 and bf16);
    ``nasty-train tag`` in float32 and in bf16, each against ``pipeline`` at 64 in its precision. Where bf16 is
    not native: the Trainer in float32 with length grouping instead of its bf16 arms, and no 32-true arm of
    ours (our defaults are 32-true there).
    bf16 arms run only where the CPU computes bfloat16 natively. FLOP/s count the model's useful work:
    ``6 x non-embedding parameters x real subwords`` for training (forward and backward), ``2 x ...`` for
    tagging; attention scores (about 1% of it at these sentence lengths) and padding are not counted.

    Args:
        train_file: Labelled CoNLL-U training file (UPOS).
        dev_file: Labelled CoNLL-U dev file, tagged and scored by both.
        model: Model preset, hub id or directory.
        subset: Use the first N training sentences.
        epochs: Training epochs.
        batch_size: Sentences per batch.
        learning_rate: Peak learning rate.
        seeds: Rounds of every arm (fits with seeds 1..N; tagging repeated), interleaved so that drift of the
            machine hits all alike.
        threads: Torch threads in every run (default: all cores).
    """
    from nasty_lightning.modelling.precision import cpu_has_native_bf16, fastest_precision

    threads = threads or os.cpu_count()
    bf16 = cpu_has_native_bf16()
    ours = "bf16" if fastest_precision("cpu") == "bf16-mixed" else "float32"
    fit_arms = {  # name: (command, options, precision of the arithmetic)
        "fit: Trainer (defaults, fp32)": ("trainer_fit", {}, "float32"),
        "fit: Trainer bf16": ("trainer_fit", {"bf16": True}, "bf16"),
        "fit: Trainer bf16 + group_by_length": ("trainer_fit", {"bf16": True, "group_by_length": True}, "bf16"),
        "fit: nasty-train (defaults)": ("ours_fit", {}, ours),
        "fit: nasty-train 32-true": ("ours_fit", {"options": "--trainer.precision 32-true"}, "float32"),
    }
    if not bf16:  # the Trainer's best here is float32 with length grouping; our defaults already are 32-true
        fit_arms["fit: Trainer + group_by_length"] = ("trainer_fit", {"group_by_length": True}, "float32")
        del fit_arms["fit: nasty-train 32-true"]
    tag_arms = {
        "tag: pipeline (defaults)": ("pipeline_tag", {}, "float32"),
        "tag: pipeline batch_size=64": ("pipeline_tag", {"batch_size": 64}, "float32"),
        "tag: pipeline batch_size=64 bf16": ("pipeline_tag", {"batch_size": 64, "bf16": True}, "bf16"),
        "tag: nasty-train": ("ours_tag", {}, "float32"),
        "tag: nasty-train --precision bf16": ("ours_tag", {"precision": "bf16"}, "bf16"),
    }
    arms = {k: v for k, v in {**fit_arms, **tag_arms}.items() if bf16 or v[2] != "bf16"}
    rows: dict[str, list[dict]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        common = _fit_settings(
            tmp, train_file, subset, dev_file=dev_file, model=model, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate,
        )  # fmt: skip
        params, subwords = _work(model, {"train": common["train_file"], "dev": dev_file})
        rates = _worker(threads, "peak", bf16=bf16)
        model_dir = str(Path(tmp) / "run-fit: nasty-train (defaults)-1" / "model")
        for seed in range(1, seeds + 1):
            for name, (command, settings, _) in arms.items():
                if command in ("trainer_fit", "ours_fit"):
                    run_dir = {"run_dir": str(Path(tmp) / f"run-{name}-{seed}")} if command == "ours_fit" else {}
                    rows[name].append(_worker(threads, command, seed=seed, **run_dir, **settings, **common))
                else:
                    rows[name].append(_worker(threads, command, model_dir=model_dir, dev_file=dev_file, **settings))
            print(f"round {seed}: done", file=sys.stderr, flush=True)

    def mean(name: str, key: str) -> float:
        return _mean(rows[name], key)

    print(
        f"\nmodel {model} ({params / 1e6:.1f}M parameters outside the embeddings), first {subset} sentences of "
        f"{train_file} ({subwords['train']:,} subwords), {epochs} epoch(s), batch {batch_size}, lr {learning_rate}, "
        f"{seeds} round(s), {threads} threads; dev: {dev_file} ({subwords['dev']:,} subwords)"
    )
    print(
        f"matrix-multiply peak (2048 x 2048): float32 {rates['float32'] / 1e9:,.0f} GFLOP/s, bf16 "
        + (f"{rates['bf16'] / 1e9:,.0f} GFLOP/s\n" if bf16 else "not native (not measured; bf16 arms left out)\n")
    )
    print(
        "| arm | whole process s | inner s | subwords/s (inner) | GFLOP/s (inner) | of peak | peak RSS MB | accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (command, _, precision) in arms.items():
        training = command.endswith("_fit")
        work = subwords["train"] * epochs if training else subwords["dev"]
        seconds = mean(name, "seconds")
        flops = (6 if training else 2) * params * work / seconds
        rss = max(r["peak_rss_mb"] for r in rows[name])
        print(
            f"| {name} | {mean(name, 'wall'):.1f} | {seconds:.1f} | {work / seconds:,.0f} | {flops / 1e9:,.0f} | "
            f"{flops / rates[precision]:.1%} | {rss:,.0f} | {mean(name, 'accuracy'):.4f} |"
        )
    print()
    for name in (n for n in fit_arms if n in rows):
        by_seed = ", ".join(f"{r['accuracy']:.4f}" for r in rows[name])
        print(f"{name}, dev accuracy by seed: {by_seed}")
    ours_fit_arm = "fit: nasty-train (defaults)"
    print()
    for name in (n for n in fit_arms if n in rows and n.startswith("fit: Trainer")):
        wall = mean(name, "wall") / mean(ours_fit_arm, "wall")
        print(
            f"fit, ours / {name.removeprefix('fit: ')}: whole process {wall:.2f}x, "
            f"inner {mean(name, 'seconds') / mean(ours_fit_arm, 'seconds'):.2f}x, accuracy "
            f"{100 * (mean(ours_fit_arm, 'accuracy') - mean(name, 'accuracy')):+.2f} points"
        )
    for name in (n for n in tag_arms if n in rows and "nasty-train" in n):
        peer = "tag: pipeline batch_size=64" + (" bf16" if tag_arms[name][2] == "bf16" else "")  # same precision
        print(
            f"tag, {name.removeprefix('tag: ')} / {peer.removeprefix('tag: ')}: whole process "
            f"{mean(peer, 'wall') / mean(name, 'wall'):.2f}x, "
            f"inner {mean(peer, 'seconds') / mean(name, 'seconds'):.2f}x"
        )


def options(
    train_file: str,
    dev_file: str,
    variants: list[str],
    model: str = "minilm",
    subset: int = 2000,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    seeds: int = 1,
    threads: int | None = None,
) -> None:
    """Fine-tune with our defaults and with each variant's extra options, in one invocation, and print
    words/s and dev accuracy against the defaults.

    Args:
        train_file: Labelled CoNLL-U training file (UPOS).
        dev_file: Labelled CoNLL-U dev file.
        variants: Extra nasty-train arguments, one string per variant (``"--trainer.precision bf16-mixed"``).
        model: Model preset, hub id or directory.
        subset: Use the first N training sentences.
        epochs: Training epochs.
        batch_size: Sentences per batch.
        learning_rate: Peak learning rate.
        seeds: Runs of each (seeds 1..N, interleaved so that drift of the machine hits all alike).
        threads: Torch threads in every run (default: all cores).
    """
    threads = threads or os.cpu_count()
    rows: dict[str, list[dict]] = {"": [], **{v: [] for v in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        common = _fit_settings(
            tmp, train_file, subset, dev_file=dev_file, model=model, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate,
        )  # fmt: skip
        for seed in range(1, seeds + 1):
            for i, variant in enumerate(rows):
                run_dir = str(Path(tmp) / f"run{i}-{seed}")
                result = _worker(threads, "ours_fit", seed=seed, run_dir=run_dir, options=variant, **common)
                rows[variant].append(result)
            print(f"seed {seed}: done", file=sys.stderr, flush=True)

    def speed(variant: str) -> float:
        return _words_per_second(rows[variant])

    def accuracy(variant: str) -> float:
        return _mean(rows[variant], "accuracy")

    print(
        f"\nnasty-train fit, model {model}, first {subset} sentences of {train_file}, {epochs} epoch(s), batch "
        f"{batch_size}, lr {learning_rate}, {seeds} seed(s), {threads} threads; dev: {dev_file}\n"
    )
    print("| options | words/s | speed vs defaults | dev accuracy | points vs defaults |\n|---|---|---|---|---|")
    for variant in rows:
        print(
            f"| {variant or '(defaults)'} | {speed(variant):,.0f} | {speed(variant) / speed(''):.2f}x | "
            f"{accuracy(variant):.4f} | {100 * (accuracy(variant) - accuracy('')):+.2f} |"
        )


def _entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Strict IOB2 precision, recall and F1 over exact entity spans (an ``I-`` without its ``B-`` starts no
    entity): ``eval``'s and validation's entity F1, which equals seqeval's strict mode (tests/labels/test_entities)."""
    from nasty_lightning.labels.entities import entity_scores

    return {k: v for k, v in entity_scores(gold, predicted).items() if k in ("f1", "precision", "recall")}


def trainer_ner(
    train_file: str,
    dev_file: str,
    model: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    warmup_ratio: float = 0.0,
    weight_decay: float = 0.0,
    select_best: bool = False,
    bf16: bool = False,
) -> None:
    """(a) run_ner.py's recipe for NER: Trainer, first-subword labels, each word's most likely tag. With
    ``select_best`` it scores the dev set after every epoch and keeps the best epoch's weights (its
    ``load_best_model_at_end`` on F1), as nasty-train keeps best.ckpt; ``bf16`` trains in bfloat16 mixed
    precision (its ``bf16`` option), as nasty-train does where the CPU computes in bfloat16."""
    import numpy as np
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    _, dev, labels, tokenizer, train_rows, dev_rows, model_ = _trainer_setup(train_file, dev_file, model, "ner", seed)
    gold = [s.labels("ner") for s in dev]

    # each dev word's first subword, where the encoding put its label (-100 in ``labels`` elsewhere)
    first = [
        np.array(row["labels"]) != -100 for row in _trainer_rows(dev, tokenizer, "ner", {t: 0 for g in gold for t in g})
    ]

    def tags(logits) -> list[list[str]]:
        """Each dev word's most likely tag."""
        return [[labels[i] for i in x[: len(f)][f].argmax(-1)] for x, f in zip(logits, first, strict=True)]

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size,
            learning_rate=learning_rate,
            num_train_epochs=epochs,
            warmup_steps=float(warmup_ratio),  # transformers 5: a float below 1 is a ratio of the steps
            weight_decay=weight_decay,
            seed=seed,
            report_to=[],
            logging_strategy="no",
            use_cpu=True,
            eval_strategy="epoch" if select_best else "no",
            save_strategy="epoch" if select_best else "no",
            save_total_limit=1 if select_best else None,
            load_best_model_at_end=select_best,
            metric_for_best_model="f1" if select_best else None,
            bf16=bf16,
        )
        trainer = Trainer(
            model=model_,
            args=args,
            train_dataset=train_rows,
            eval_dataset=dev_rows if select_best else None,
            data_collator=DataCollatorForTokenClassification(tokenizer),
            compute_metrics=(lambda p: _entity_scores(gold, tags(p.predictions))) if select_best else None,
        )
        start = time.perf_counter()
        trainer.train()
        evaluating = sum(e.get("eval_runtime", 0.0) for e in trainer.state.log_history)
        seconds = time.perf_counter() - start - evaluating  # training only, as for nasty-train
        predictions = trainer.predict(dev_rows).predictions
    _report(seconds=seconds, **_entity_scores(gold, tags(predictions)))


def ours_ner(train_file: str, dev_file: str, recipe: str, seed: int, run_dir: str, options: str = "") -> None:
    """(b) nasty-train fit with a config, then its exported model tags the dev words, with the best valid tag
    sequence (Viterbi) and with each word's most likely tag; both scored like (a), by strict IOB2."""
    from nasty_lightning import Tagger
    from nasty_lightning.commands.cli import main
    from nasty_lightning.formats.conllu import read_sentences
    from nasty_lightning.formats.untrusted import load_checkpoint
    from nasty_lightning.inference.export import callback_state

    sys.argv = ["nasty-train"]
    main(
        ["fit", "--config", recipe, "--data.train_file", train_file, "--data.val_file", dev_file,
         "--seed_everything", str(seed), "--trainer.default_root_dir", run_dir, "--trainer.enable_progress_bar",
         "false", *shlex.split(options)]
    )  # fmt: skip
    record = callback_state(load_checkpoint(Path(run_dir) / "checkpoints" / "last.ckpt"), "RunRecord")
    dev = read_sentences(dev_file)
    gold = [s.labels("ner") for s in dev]
    tagger = Tagger.load(Path(run_dir) / "model")
    viterbi = _entity_scores(gold, tagger.predict([s.words for s in dev])["ner"])
    tagger.constrained = False
    argmax = _entity_scores(gold, tagger.predict([s.words for s in dev])["ner"])
    _report(seconds=record["train_seconds"] - record["validation_seconds"], **viterbi, argmax_f1=argmax["f1"])


def _split(source: str, n: int, tmp: Path) -> tuple[str, str]:
    """The first ``n`` sentences of ``source`` as a training file, the rest as a dev file."""
    blocks = [b for b in Path(source).read_text(encoding="utf-8").split("\n\n") if b.strip()]
    if not 0 < n < len(blocks):
        raise SystemExit(f"--train_sentences must be between 1 and {len(blocks) - 1}, got {n}")
    train, dev = tmp / f"train{Path(source).suffix}", tmp / f"dev{Path(source).suffix}"
    train.write_text("\n\n".join(blocks[:n]) + "\n\n", encoding="utf-8")
    dev.write_text("\n\n".join(blocks[n:]) + "\n\n", encoding="utf-8")
    return str(train), str(dev)


def ner(
    data_file: str,
    train_sentences: int = 1600,
    recipe: str = "configs/ner_minilm.yaml",
    variants: list[str] | None = None,
    seeds: int = 3,
    threads: int | None = None,
) -> None:
    """Entity F1 of nasty-train's NER recipe against run_ner.py's Trainer recipe, on one file split in two.

    The Trainer runs at the guide's defaults (3 epochs, lr 3e-5, batch 16, no warmup, float32) and at the
    recipe's settings (its epochs, learning rate, batch size, warmup and weight decay, keeping the best
    epoch by dev F1 as nasty-train keeps best.ckpt, in the precision nasty-train trains in here). Every
    model is scored the same way: exact spans of strict IOB2 (``labels.entities``, seqeval's strict mode).

    Args:
        data_file: Labelled NER file (IOB2, CoNLL-2003 or CoNLL-U with a ner column).
        train_sentences: Its first N sentences train, the rest are the dev set.
        recipe: nasty-train config of the recipe (its model is the Trainer's too).
        variants: More nasty-train runs, each with extra options added to the config, e.g.
            ``"--model.casing true"``.
        seeds: Runs of everything with seeds 1..N.
        threads: Torch threads in every run (default: all cores).
    """
    import yaml

    from nasty_lightning.modelling.precision import fastest_precision

    threads = threads or os.cpu_count()
    settings = yaml.safe_load(Path(recipe).read_text(encoding="utf-8"))
    model, trainer, data = settings.get("model", {}), settings.get("trainer", {}), settings.get("data", {})
    same = dict(  # what the config gives, else nasty-train's defaults
        epochs=trainer.get("max_epochs", 3), batch_size=data.get("batch_size", 16),
        learning_rate=model.get("learning_rate", 3e-5), warmup_ratio=model.get("warmup_ratio", 0.1),
        weight_decay=model.get("weight_decay", 0.01), select_best=True,
        bf16=trainer.get("precision", fastest_precision()) == "bf16-mixed",
    )  # fmt: skip
    guide = dict(epochs=3, batch_size=16, learning_rate=3e-5)
    names = {
        "trainer_guide": "Trainer, guide defaults (3 epochs, lr 3e-05, last epoch)",
        "trainer_same": f"Trainer, {Path(recipe).name}'s settings ({same['epochs']} epochs, lr "
        f"{same['learning_rate']}, warmup {same['warmup_ratio']}, best epoch by dev F1{', bf16' * same['bf16']})",
        **{f"ours{i}": f"nasty-train {Path(recipe).name} {v}".strip() for i, v in enumerate(["", *(variants or [])])},
    }
    rows: dict[str, list[dict]] = {k: [] for k in names}
    with tempfile.TemporaryDirectory() as tmp:
        train_file, dev_file = _split(data_file, train_sentences, Path(tmp))
        files = dict(train_file=train_file, dev_file=dev_file)
        for seed in range(1, seeds + 1):
            for key, settings in (("trainer_guide", guide), ("trainer_same", same)):
                rows[key].append(
                    _worker(
                        threads, "trainer_ner", seed=seed, model=model.get("model_name", "minilm"), **files, **settings
                    )
                )
            for i, variant in enumerate(["", *(variants or [])]):
                run_dir = str(Path(tmp) / f"run{i}-{seed}")
                rows[f"ours{i}"].append(
                    _worker(threads, "ours_ner", seed=seed, recipe=recipe, run_dir=run_dir, options=variant, **files)
                )
            print(f"seed {seed}: done", file=sys.stderr, flush=True)

    print(
        f"\nentity F1 (exact spans, strict IOB2) on {data_file}: sentences 1-{train_sentences} train, the rest dev; "
        f"model {model.get('model_name', 'minilm')}, seeds 1-{seeds}, {threads} threads\n"
    )
    print("| recipe | F1 by seed | mean F1 | precision | recall | argmax F1 | train s (no evaluation) |")
    print("|---|---|---|---|---|---|---|")
    for key, name in names.items():
        results = rows[key]
        argmax = _mean(results, "argmax_f1") if "argmax_f1" in results[0] else _mean(results, "f1")
        by_seed = ", ".join(f"{r['f1']:.4f}" for r in results)
        print(
            f"| {name} | {by_seed} | {_mean(results, 'f1'):.4f} | "
            f"{_mean(results, 'precision'):.4f} | {_mean(results, 'recall'):.4f} | {argmax:.4f} | "
            f"{_mean(results, 'seconds'):.0f} |"
        )
    gain = _mean(rows["ours0"], "f1") - _mean(rows["trainer_same"], "f1")
    print(f"\nnasty-train - Trainer at the same settings, mean F1: {gain:+.4f}")


if __name__ == "__main__":
    auto_cli(
        [compare, options, ner, peak, trainer_fit, ours_fit, pipeline_tag, ours_tag, trainer_ner, ours_ner],
        as_positional=False,
    )
