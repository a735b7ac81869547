"""Every YAML file in configs/ parses against the CLI's schema (nothing is downloaded or built)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nasty_lightning.commands.cli import main
from nasty_lightning.formats.presets import PRESETS

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
BEST_UPOS_THEN_NER = ("pos_minilm_best.yaml", "ner_minilm_best.yaml")


def test_there_are_configs_for_every_preset():
    names = {yaml.safe_load(p.read_text())["model"]["model_name"] for p in CONFIGS}
    # and one warm start: the NER recipe that starts from the UPOS model pos_minilm_best.yaml exports
    assert names == set(PRESETS) | {"minilm", "runs/pos_minilm_best/model"}
    [pos_best, ner_best] = (yaml.safe_load((CONFIGS[0].parent / n).read_text()) for n in BEST_UPOS_THEN_NER)
    assert f"{pos_best['trainer']['default_root_dir']}/model" == ner_best["model"]["model_name"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, capsys):
    assert config.read_text().startswith(f"# nasty-train fit --config configs/{config.name}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--data.batch_size", "7", "--print_config"])
    assert exit_.value.code == 0
    parsed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(config.read_text())
    assert parsed["model"]["model_name"] == written["model"]["model_name"]
    assert parsed["data"]["batch_size"] == 7  # a command-line override wins over the file
    assert parsed["trainer"]["max_epochs"] == written["trainer"]["max_epochs"]  # 3, the guide's, but for NER
    # the guide's 500 steps; the best recipes validate at the end of every epoch only (as they were timed)
    assert parsed["validation"]["every_n_steps"] == (0 if config.stem.endswith("_best") else 500)
    # last.ckpt is LastCheckpoint's alone: Lightning's save_last writes it at an epoch's last batch too,
    # and a run resumed from there would run the end of that epoch twice
    assert parsed["checkpoint"]["save_last"] is False and parsed["last_checkpoint"]["every_n_steps"] == 0
