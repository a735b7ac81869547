"""The Lightning internals ``nasty_lightning._compat.lightning`` relies on, as the installed Lightning has them."""

from __future__ import annotations

import csv
import inspect
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from nasty_lightning._compat.lightning import (
    AppendingCSVLogger,
    OwnCheckpointSettings,
    subcommand_parser,
    validate_also_when,
)


class _Stop(Exception):
    pass


class _Validations(Callback):
    def __init__(self) -> None:
        self.at: list[tuple[int, int]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.at.append((trainer.current_epoch, trainer.global_step))


def _fit(extra_steps: set[int], **trainer_args) -> list[tuple[int, int]]:
    seen = _Validations()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=4,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[seen],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    validate_also_when(trainer, lambda: trainer.global_step in extra_steps)
    trainer.fit(BoringModel())
    return seen.at


def test_lightning_asks_should_check_val_fx_after_every_batch():
    loop = L.Trainer(logger=False, enable_checkpointing=False).fit_loop.epoch_loop
    for name in ("_should_check_val_fx", "_should_check_val_epoch"):
        assert callable(getattr(loop, name, None)), (
            f"Lightning removed TrainingEpochLoop.{name}: validate_also_when (--validation.every_n_steps) needs "
            "another way to add validations"
        )
    assert _fit({2}) == [(0, 2), (0, 4), (1, 8)], (
        "Lightning no longer validates where TrainingEpochLoop._should_check_val_fx says: "
        "validate_also_when (--validation.every_n_steps) validates only at epoch ends"
    )
    # in the epochs Lightning skips (check_val_every_n_epoch), no extra validation either
    assert _fit({2, 6}, check_val_every_n_epoch=2) == [(1, 6), (1, 8)]


class _ProbeFitParser(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        fit = subcommand_parser(self, "fit")
        fit.set_defaults({"trainer.max_epochs": 7})
        super().parse_arguments(parser, args)
        raise _Stop(fit, self.config)


def test_subcommand_parsers_are_in_subcommand_parsers_when_arguments_are_parsed():
    with pytest.raises(_Stop) as stop:
        _ProbeFitParser(BoringModel, args=["fit"])
    fit, config = stop.value.args
    assert isinstance(fit, LightningArgumentParser), "LightningCLI._subcommand_parsers no longer holds its parsers"
    assert "ckpt_path" in {a.dest for a in fit._actions}
    assert config.fit.trainer.max_epochs == 7, (
        "LightningCLI._subcommand_parsers['fit'] is no longer the parser of fit: --ckpt_path's settings and help "
        "go nowhere"
    )


class _HParamsModel(BoringModel):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()


def _parsed_width(cli_class: type, ckpt) -> int:
    class Probe(cli_class):
        def before_instantiate_classes(self) -> None:
            raise _Stop(self.config.validate.model.width)

    with pytest.raises(_Stop) as stop:
        Probe(_HParamsModel, args=["validate", "--ckpt_path", str(ckpt), "--model.width", "3"])
    return stop.value.args[0]


def test_lightning_reads_ckpt_path_hyperparameters_in_parse_ckpt_path_and_the_mixin_stops_it(tmp_path):
    ckpt = tmp_path / "saved.ckpt"
    torch.save({"hyper_parameters": {"width": 5}}, ckpt)
    source = inspect.getsource(LightningCLI.__init__)
    assert "self._parse_ckpt_path()" in source, (
        "LightningCLI.__init__ no longer calls the private _parse_ckpt_path(): see whether it reads --ckpt_path's "
        "hyperparameters another way, over nasty-train's own (OwnCheckpointSettings)"
    )
    assert _parsed_width(LightningCLI, ckpt) == 5, (
        "LightningCLI no longer parses --ckpt_path's hyperparameters over the command line: OwnCheckpointSettings "
        "may go"
    )
    assert _parsed_width(type("Own", (OwnCheckpointSettings, LightningCLI), {}), ckpt) == 3


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _earlier_metrics(folder):
    folder.mkdir()
    (folder / "metrics.csv").write_text("loss,step\n0.5,0\n")
    return folder / "metrics.csv"


def test_appending_logger_keeps_metrics_csv_where_lightnings_deletes_it(tmp_path):
    metrics = _earlier_metrics(tmp_path / "ours")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = AppendingCSVLogger(save_dir=metrics.parent, name="", version="")
        logger.log_metrics({"loss": 0.25}, step=1)
        logger.save()
    assert _rows(metrics) == [{"loss": "0.5", "step": "0"}, {"loss": "0.25", "step": "1"}], (
        "Lightning's CSV writer no longer calls the private _check_log_dir_exists() from __init__, or CSVLogger "
        "no longer builds it in _experiment with _fs: AppendingCSVLogger must change"
    )
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]

    theirs = _earlier_metrics(tmp_path / "theirs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = CSVLogger(save_dir=theirs.parent, name="", version="")
        plain.log_metrics({"loss": 0.25}, step=1)
        plain.save()
    assert _rows(theirs) == [{"loss": "0.25", "step": "1"}], "Lightning's CSVLogger keeps metrics.csv now"
