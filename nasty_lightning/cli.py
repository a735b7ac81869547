"""``nasty-train``: LightningCLI for the trainer verbs (fit, validate, test, predict), and jsonargparse
for the commands that work on exported models (eval, tag, export).

Every option comes from a typed signature (``TokenTagger``, ``TaggingDataModule``, the Trainer, the
callbacks below, ``evaluate``, ``tag``, ``export``), so YAML configs and command-line overrides share
one schema and ``--help`` shows each option with its docstring.
"""

from __future__ import annotations

import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import auto_cli
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from nasty_lightning.callbacks import LastCheckpoint, RandomState, RunRecord, ValidationSchedule
from nasty_lightning.checkpoint_io import AtomicCheckpointIO
from nasty_lightning.data import TaggingDataModule
from nasty_lightning.errors import UserError
from nasty_lightning.evaluate import evaluate
from nasty_lightning.export import export, export_checkpoint, load_checkpoint
from nasty_lightning.model import TokenTagger
from nasty_lightning.precision import fastest_precision
from nasty_lightning.tagging import tag

RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml")
COMMANDS = {"eval": evaluate, "tag": tag, "export": export}
DESCRIPTION = (
    "Fine-tune transformer encoders on CoNLL-U files. Trainer commands: fit, validate, test, predict. "
    "Commands on exported models: nasty-train eval|tag|export --help."
)


class NastyCLI(LightningCLI):
    """LightningCLI with the label vocabulary linked from data to model, and one folder per run."""

    def __init__(self, *args: Any, command: str = "", **kwargs: Any) -> None:
        self.command = command
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: start afresh in a --trainer.default_root_dir that already holds a run, deleting its "
            "checkpoints and logs (without it, such a folder is refused unless resuming with --ckpt_path).",
        )
        precision = next(a for a in parser._actions if a.dest == "trainer.precision")
        precision.help = (
            "Numeric precision: 32-true, bf16-mixed, 16-mixed, 64-true, ... Default for fit: bf16-mixed where the "
            "device computes in bfloat16 natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16, AMX or "
            "Arm BF16), else 32-true; for validate, test and predict: 32-true. Validation and test always compute "
            "in full precision, as the exported model does."
        )
        parser.link_arguments("model.model_name", "data.model_name")
        parser.link_arguments("seed_everything", "data.seed", compute_fn=_seed_or_zero)
        parser.link_arguments("data.label_vocab", "model.labels", apply_on="instantiate")
        parser.add_lightning_class_args(ValidationSchedule, "validation")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {
                "early_stopping.monitor": "val_acc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 3,
                "early_stopping.check_on_train_epoch_end": False,  # after every validation, as the checkpoints
            }
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": False,  # last.ckpt is written by last_checkpoint
                "checkpoint.save_on_train_epoch_end": False,  # after every validation, mid-epoch ones too
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "epoch_checkpoint")
        parser.set_defaults(
            {
                "epoch_checkpoint.filename": "{epoch}",
                "epoch_checkpoint.save_top_k": -1,
                "epoch_checkpoint.every_n_epochs": 1,
                "epoch_checkpoint.save_on_train_epoch_end": True,
            }
        )

    def _parse_ckpt_path(self) -> None:
        """Take the model's hyperparameters and the label vocabulary from ``--ckpt_path``.

        Lightning's version merges every saved model hyperparameter into the config; here the labels are
        a link target owned by the data module, so they go to ``data.labels`` (and ``validate``/``test``/
        ``predict`` need no training file).
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
            return
        ckpt = load_checkpoint(ckpt_path)  # a clear error for a missing, corrupt or foreign file
        model = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
        labels = model.pop("labels", None)
        data_state = ckpt.get(TaggingDataModule.__qualname__, {})
        update = {"model": model, "data": {"labels": labels, "label_column": data_state.get("label_column", "upos")}}
        self.config = self.parser.parse_object({subcommand: update}, self.config)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        root = Path(cfg.trainer.default_root_dir or os.getcwd())
        for key in ("checkpoint", "epoch_checkpoint", "last_checkpoint"):
            if cfg[key].dirpath is None:
                cfg[key].dirpath = str(root / "checkpoints")
        if self.subcommand != "fit":  # results are printed; the run folder's logs stay those of fit
            self.save_config_callback = None
            if cfg.trainer.logger is None:
                cfg.trainer.logger = False
            return
        if cfg.trainer.precision is None:
            cfg.trainer.precision = fastest_precision(cfg.trainer.accelerator)
        if cfg.data.val_file is None:
            raise UserError("fit needs --data.val_file: validation, early stopping and the best checkpoint use it")
        if cfg.trainer.logger in (None, True):
            cfg.trainer.logger = {
                "class_path": "nasty_lightning.runlog.RunLogger",
                "init_args": {"save_dir": str(root), "name": "", "version": ""},
            }
        if cfg.ckpt_path == "last" and not (Path(cfg.last_checkpoint.dirpath) / "last.ckpt").is_file():
            raise UserError(
                f"--ckpt_path last: there is no {Path(cfg.last_checkpoint.dirpath) / 'last.ckpt'} to resume"
            )
        if rank_zero_only.rank == 0:
            _claim_run_folder(
                root, Path(cfg.checkpoint.dirpath), resume=cfg.ckpt_path is not None, overwrite=cfg.overwrite
            )

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks[:0] = [RunRecord(self.command), RandomState()]  # before checkpoints, which save their state
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        """Score the best checkpoint on the test file, if there is one, and export it to RUN/model."""
        best = self._get(self.config_init, "checkpoint").best_model_path
        if not best:
            return
        summary: dict[str, Any] = {
            "epochs_run": self.trainer.current_epoch,
            "stopped_early": self._get(self.config_init, "early_stopping").stopped_epoch > 0,
        }
        if self.datamodule.hparams.test_file:
            [summary["test"]] = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        if self.trainer.is_global_zero:
            out = export_checkpoint(best, Path(self.trainer.default_root_dir) / "model", summary)
            print(f"Exported the best checkpoint to {out}", flush=True)


def _seed_or_zero(seed: int | bool | None) -> int:
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _claim_run_folder(root: Path, checkpoints: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one, unless resuming it or told to overwrite it."""
    old = [root / name for name in RUN_FILES if (root / name).exists()] + sorted(checkpoints.glob("*.ckpt"))
    if not old or resume:
        return
    if not overwrite:
        raise UserError(
            f"{root} already holds a run ({old[0]}); resume it with --ckpt_path last, replace it with "
            "--overwrite true, or choose another --trainer.default_root_dir"
        )
    for path in old:
        path.unlink()


def run(args: list[str] | None = None) -> None:
    """Run the LightningCLI on ``args`` (the command line when ``None``)."""
    # Lightning looks for the place in the epoch on the loader; ours is in the data module's state.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    NastyCLI(
        TokenTagger,
        TaggingDataModule,
        args=args,
        command=shlex.join(["nasty-train", *(sys.argv[1:] if args is None else args)]),
        seed_everything_default=42,
        trainer_defaults={"max_epochs": 3, "default_root_dir": "runs/default", "use_distributed_sampler": False},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # TokenTagger.configure_optimizers: AdamW, linear warmup and decay
        parser_kwargs={"prog": "nasty-train", "description": DESCRIPTION},
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``nasty-train``; problems with input or options end with one line and exit status 2."""
    argv = sys.argv[1:] if args is None else args
    # oneDNN keeps a compiled kernel for every matrix shape it meets (up to 1,024 by default); with
    # bf16-mixed on CPU and batches of varying shape, a benchmark fit peaked 500 MB higher than with 64,
    # which was as fast (README, Speed). Read at oneDNN's first use; a value set outside wins.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    try:
        if argv and argv[0] in COMMANDS:
            name = argv[0]
            auto_cli(COMMANDS[name], args=argv[1:], as_positional=False, prog=f"nasty-train {name}")
        else:
            run(args)
    except UserError as err:
        print(f"nasty-train: error: {err}", file=sys.stderr)
        sys.exit(2)
