"""Fine-tune the real MiniLM on a few hundred EWT sentences (skipped when neither data/ nor ../shared/data has EWT)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from clirun import metrics
from conftest import SHARED_DATA

from nasty_lightning.commands.cli import main
from nasty_lightning.formats.conllu import read_sentences

pytestmark = pytest.mark.integration
EWT = SHARED_DATA / "ud" / "en_ewt"


def head(source: Path, target: Path, n: int) -> Path:
    """The first n sentences of a CoNLL-U file, byte for byte."""
    blocks = source.read_text(encoding="utf-8").split("\n\n")[:n]
    target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return target


@pytest.mark.slow
@pytest.mark.skipif(not EWT.is_dir(), reason="UD English-EWT is in neither data/ud nor ../shared/data/ud")
def test_minilm_learns_upos_on_an_ewt_subset(tmp_path):
    train = head(EWT / "en_ewt-ud-train.conllu", tmp_path / "train.conllu", 400)
    dev = head(EWT / "en_ewt-ud-dev.conllu", tmp_path / "dev.conllu", 200)
    main(
        [
            "fit",
            "--config",
            str(Path(__file__).parents[2] / "configs" / "pos_minilm.yaml"),
            "--data.train_file",
            str(train),
            "--data.val_file",
            str(dev),
            "--trainer.max_epochs",
            "2",
            "--model.learning_rate",
            "1e-4",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    tags = Counter(t for s in read_sentences(dev) for t in s.labels("upos"))
    majority = tags.most_common(1)[0][1] / sum(tags.values())
    accuracy = float([r for r in metrics(tmp_path / "run") if r["val_acc"]][-1]["val_acc"])
    assert accuracy > max(0.75, majority + 0.5), (accuracy, majority)
