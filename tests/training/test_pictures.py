"""The pictures: the confusion matrix of ``eval --confusion_png`` and the training curves of an export,
tested on their numbers, and on their PNGs being whole and of a sensible size."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from nasty_lightning.commands.evaluate import _percent, confusion, plot_confusion, row_shares
from nasty_lightning.inference.export import curve_points, plot_curves

UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and that its first chunk is the header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def good_tagger_output(n_per_tag: int = 200) -> tuple[list[str], list[str]]:
    """Gold UPOS tags and predictions that are right but for one NOUN in 200 taken for a PROPN, and
    half the X words taken for NOUN."""
    gold = [t for t in UPOS for _ in range(n_per_tag)]
    predicted = list(gold)
    first_noun, first_x = gold.index("NOUN"), gold.index("X")
    predicted[first_noun] = "PROPN"
    predicted[first_x : first_x + n_per_tag // 2] = ["NOUN"] * (n_per_tag // 2)
    return gold, predicted


def test_confusion_rows_are_shares_of_the_gold_tag():
    gold, predicted = good_tagger_output()
    tags, counts = confusion(gold, predicted)
    shares = row_shares(counts)
    noun, propn, x = (tags.index(t) for t in ("NOUN", "PROPN", "X"))
    assert tags == UPOS and counts.sum() == len(gold)
    assert np.allclose(shares.sum(axis=1), 1)
    assert shares[noun, propn] == pytest.approx(1 / 200) and shares[noun, noun] == pytest.approx(199 / 200)
    assert shares[x, noun] == pytest.approx(0.5)
    assert shares[propn, noun] == 0


def test_a_tag_that_is_only_predicted_has_an_empty_row():
    tags, counts = confusion(["NOUN", "NOUN", "VERB"], ["NOUN", "ADJ", "VERB"])
    shares = row_shares(counts)
    assert tags == ["ADJ", "NOUN", "VERB"]
    assert shares.tolist() == [[0, 0, 0], [0.5, 0.5, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    ("share", "text"),
    [(0, "0"), (1, "100"), (0.9996, "99.9"), (0.991, "99.1"), (0.5, "50"), (0.012, "1.2"), (0.0004, "<0.1")],
)
def test_percentages_in_cells_never_round_an_error_away(share, text):
    assert _percent(share) == text


@pytest.mark.slow
def test_confusion_png_is_a_readable_picture():
    gold, predicted = good_tagger_output()
    png = plot_confusion(gold, predicted, "runs/pos/model", "dev.conllu")
    width, height = png_size(png)
    assert 800 <= width <= 2500 and 800 <= height <= 2500 and len(png) < 1_000_000
    many = [f"T{i}" for i in range(300)]  # FEATS-sized tag sets: smaller cells, no numbers, bounded size
    width, height = png_size(plot_confusion(many, many[1:] + many[:1], "runs/feats/model", "dev.conllu"))
    assert width <= 5000 and height <= 5000


def write_metrics(path: Path, rows: list[str]) -> Path:
    path.write_text("epoch,step,train_acc,train_loss,val_acc,val_loss\n" + "".join(r + "\n" for r in rows))
    return path


def test_curves_stop_at_the_checkpoint(tmp_path):
    """An epoch of 3 steps: the checkpoint saved after it (global step 3) has the rows of steps 0-2;
    the rows from step 3 on are the next epoch's."""
    metrics = write_metrics(
        tmp_path / "metrics.csv",
        ["0,0,0.1,2.5,,", "0,1,0.2,2.0,,", "0,2,0.3,1.5,,", "0,2,,,0.6,1.4", "1,3,0.7,1.0,,", "1,5,,,0.8,0.9"],
    )
    train, val = curve_points(metrics, global_step=3)
    assert train == [(0, 2.5), (1, 2.0), (2, 1.5)] and val == [(2, 0.6)]
    assert curve_points(metrics, global_step=6) == ([(0, 2.5), (1, 2.0), (2, 1.5), (3, 1.0)], [(2, 0.6), (5, 0.8)])


def test_curves_are_drawn_from_a_single_point(tmp_path):
    metrics = write_metrics(tmp_path / "metrics.csv", ["0,0,,,0.6,1.4"])
    png = plot_curves(metrics, global_step=1, title="upos tagger from tiny: epoch 1, step 1")
    assert png is not None and png_size(png) == (700, 400)
    assert plot_curves(metrics, global_step=0) is None  # nothing logged before the first step
