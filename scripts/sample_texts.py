"""A seeded sample of a TSV of labelled texts with the same number of rows of every label: the few-example
learning curves of sentence classification (docs/experiments.md, "Sentence classification").

    python scripts/sample_texts.py --tsv_file runs/ewt_genre/en_ewt-ud-train-genre.tsv --per_class 20 --seed 1 \
        --out runs/ewt_genre

writes ``<stem>-<per_class>x<seed>.tsv``: the header, then the sampled rows in their order in the input, each
byte for byte. For the same seed a smaller sample is part of a larger one (the first rows of one seeded shuffle of
each label's rows), so learning curves are nested. Refuses a label with fewer rows than asked for.
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from pathlib import Path

from jsonargparse import auto_cli


def sample_texts(tsv_file: str, per_class: int, seed: int, out: str, label_column: str = "label") -> Path:
    """Write the sample and return its path.

    Args:
        tsv_file: A TSV with a header row and a label column.
        per_class: Rows of every label.
        seed: Seed of the draw.
        out: Folder to write into.
        label_column: The header's name of the label column.
    """
    lines = Path(tsv_file).read_text(encoding="utf-8").splitlines(keepends=True)
    header = next(csv.reader([lines[0]], delimiter="\t"))
    if label_column not in header:
        raise SystemExit(f"{tsv_file}:1: no column {label_column!r} in the header ({', '.join(header)})")
    rows = list(csv.reader(io.StringIO("".join(lines[1:])), delimiter="\t"))
    if len(rows) != len(lines) - 1:  # a quoted cell spanning lines: keep the bytes by row, not by line
        raise SystemExit(f"{tsv_file}: a cell spans lines; this script keeps rows byte for byte only one a line")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row[header.index(label_column)]].append(i)
    chosen = []
    for label, indices in sorted(by_label.items()):
        if len(indices) < per_class:
            raise SystemExit(f"{tsv_file}: the label {label!r} has {len(indices)} rows, fewer than {per_class}")
        random.Random(f"{seed}-{label}").shuffle(indices)
        chosen += indices[:per_class]
    path = Path(out) / f"{Path(tsv_file).stem}-{per_class}x{seed}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines[0] + "".join(lines[1 + i] for i in sorted(chosen)), encoding="utf-8")
    print(f"{path}: {len(chosen)} rows, {per_class} of each of {len(by_label)} labels")
    return path


if __name__ == "__main__":
    auto_cli(sample_texts, as_positional=False)
