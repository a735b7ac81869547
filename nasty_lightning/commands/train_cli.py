"""The trainer commands of ``nasty-train`` (fit, validate, test): a LightningCLI.

Every option comes from a typed signature (``TokenTagger``, ``TaggingDataModule``, the Trainer, the
callbacks), so YAML configs and command-line overrides share one schema and ``--help`` shows each option
with its docstring. ``cli.main`` dispatches here.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from nasty_lightning._compat.jsonargparse import set_help
from nasty_lightning._compat.lightning import OwnCheckpointSettings, subcommand_parser
from nasty_lightning.commands.cli import TRAINER_COMMANDS, SuggestOptions
from nasty_lightning.commands.early_answers import remember
from nasty_lightning.commands.quiet import quiet_lightning
from nasty_lightning.commands.run_folder import (
    TENSORBOARD_DIR,
    check_model_outside,
    check_resume,
    claim_run_folder,
    earlier_run,
    remove,
)
from nasty_lightning.data.datamodule import TaggingDataModule
from nasty_lightning.errors import UserError
from nasty_lightning.formats.untrusted import load_checkpoint
from nasty_lightning.inference.export import export_checkpoint
from nasty_lightning.labels.heads import ALLTAGS, NER, label_columns, metric_name
from nasty_lightning.modelling.precision import fastest_precision
from nasty_lightning.training.callbacks import (
    LastCheckpoint,
    RandomState,
    RunRecord,
    ValidationSchedule,
    check_resume_settings,
    resume_settings,
)
from nasty_lightning.training.checkpoint_io import RESUMABLE, AtomicCheckpointIO
from nasty_lightning.training.module import TokenTagger
from nasty_lightning.training.progress import EpochBar, ProgressLines
from nasty_lightning.training.progress import summary as run_summary

CKPT_PATH_HELP = (
    "A checkpoint of nasty-train fit (RUN/checkpoints/best.ckpt): the model, its tags, tokenizer and settings come "
    "from it, no base model or training file is needed; options you give win over its settings.",
    "Resume the run in --trainer.default_root_dir: 'last' continues it from its checkpoints/last.ckpt, exactly. "
    "The resumed run must keep the training file and the settings its batches and learning-rate schedule depend "
    "on (--data.batch_size, max_tokens, max_length, bucket, label_column, --seed_everything, the number of "
    "devices, --trainer.accumulate_grad_batches, max_epochs, max_steps, precision, --model.learning_rate, "
    "weight_decay, warmup_ratio); it may change the rest (validation and checkpoint intervals, early stopping, "
    "validation and test files, workers, cache, progress bar). To start a new run from another run's "
    "weights, give its checkpoint as --model.model_name in a new folder (a warm start).",
)


class NastyParser(SuggestOptions, LightningArgumentParser):
    """Lightning's parser, suggesting the option meant when one is misspelt."""


class NastyCLI(OwnCheckpointSettings, LightningCLI):
    """LightningCLI with the label vocabulary linked from data to model, and one folder per run."""

    def __init__(self, *args: Any, command: str = "", exit_stack: ExitStack, **kwargs: Any) -> None:
        self.command = command
        self.started = time.monotonic()  # for the summary at the end of fit
        self._exit_stack = exit_stack  # holds the run folder's claim until the command ends
        self._earlier_run: list[Path] = []  # what fit deletes before it trains: an earlier run's files
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's, less ``predict``: ``nasty-train tag`` writes what a model predicts."""
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name in TRAINER_COMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: start afresh in a --trainer.default_root_dir that already holds a run, deleting its "
            "checkpoints and logs (without it, such a folder is refused unless resuming with --ckpt_path).",
        )
        parser.add_argument(
            "--tensorboard",
            type=bool,
            default=False,
            help="fit: also log losses, scores and the learning rate for TensorBoard, in <default_root_dir>/"
            f"{TENSORBOARD_DIR} beside metrics.csv (needs pip install tensorboard; then tensorboard --logdir runs).",
        )
        parser.add_argument(
            "--monitor",
            type=str | None,
            default=None,
            help="fit: what early stopping and best.ckpt follow: a predicted column (its validation accuracy), "
            "'alltags' (UPOS, XPOS and FEATS all right), 'f1' (entity F1 of a ner column), 'macro_f1' (of a first "
            "column that labels texts), 'micro_f1' (multi-label), or a logged metric "
            "(val_loss, val_acc, val_xpos, ...). Default: f1 when the first column is ner; else what "
            "--checkpoint.monitor and --early_stopping.monitor say, the first column's accuracy (val_acc) unless set.",
        )
        set_help(
            parser,
            "trainer.precision",
            "Numeric precision: 32-true, bf16-mixed, 16-mixed, 64-true, ... Default for fit: bf16-mixed where the "
            "device computes in bfloat16 natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16, AMX or "
            "Arm BF16), else 32-true; for validate and test: 32-true. Validation during fit computes in this "
            "precision unless --model.validation_precision float32; test scores always in float32, as the exported "
            "model tags.",
        )
        parser.link_arguments("model.model_name", "data.model_name")
        parser.link_arguments("model.trust_remote_code", "data.trust_remote_code")
        parser.link_arguments("seed_everything", "data.seed", compute_fn=_seed_or_zero)
        parser.link_arguments("data.labels_by_column", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.multi_label", "model.multi_label")
        parser.add_lightning_class_args(ValidationSchedule, "validation")
        parser.add_lightning_class_args(ProgressLines, "progress")
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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the command line; with ``--ckpt_path`` (validate, test), again over the checkpoint's settings."""
        for subcommand in self.subcommands():
            set_help(subcommand_parser(self, subcommand), "ckpt_path", CKPT_PATH_HELP[subcommand == "fit"])
        given = args if args is not None else sys.argv[1:]
        if given and given[0] in self.subcommands():  # for the next --help or mistake, before Lightning loads
            remember(given[0], subcommand_parser(self, given[0]))
        super().parse_arguments(parser, args)
        self._checkpoint_settings(parser, args)

    def _checkpoint_settings(self, parser: LightningArgumentParser, args: Any) -> None:
        """Take the model's settings and the label vocabulary from ``--ckpt_path`` (validate, test).

        The checkpoint's values become defaults, and the command line and config files are parsed again over
        them: what the user types wins over what a file says. ``trust_remote_code`` is never taken from a
        file. The encoder is built from the checkpoint itself (its config, tokenizer files and weights),
        so no base model is needed. For ``fit``, ``--ckpt_path`` resumes the run folder's own run: the
        config it was started with is the one to give again.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or subcommand == "fit":
            return
        ckpt = load_checkpoint(ckpt_path)  # a clear error for a missing, corrupt, foreign or unsafe file
        saved = ckpt.get("hyper_parameters", {})
        keep = set(inspect.signature(TokenTagger.__init__).parameters) - {"self", "labels", "trust_remote_code"}
        defaults = {f"model.{k}": v for k, v in saved.items() if k in keep}
        defaults["model.model_name"] = str(ckpt_path)
        data_state = ckpt["TaggingDataModule"]
        defaults.update({f"data.{k}": data_state[k] for k in ("labels", "label_column", "max_length")})
        subcommand_parser(self, subcommand).set_defaults(defaults)
        self.config = parser.parse_args(args)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        root = Path(cfg.trainer.default_root_dir or os.getcwd())
        for key in ("checkpoint", "epoch_checkpoint", "last_checkpoint"):
            if cfg[key].dirpath is None:
                cfg[key].dirpath = str(root / "checkpoints")
        if cfg.progress.lines or (cfg.progress.lines is None and not sys.stdout.isatty()):
            cfg.trainer.enable_progress_bar = False  # a log file gets lines of text, not a bar redrawn in it
        if self.subcommand != "fit":  # results are printed; the run folder's logs stay those of fit
            self.save_config_callback = None
            if cfg.trainer.logger is None:
                cfg.trainer.logger = False
            return
        if cfg.trainer.precision is None:
            cfg.trainer.precision = fastest_precision(cfg.trainer.accelerator)
        columns = label_columns(cfg.data.label_column)
        if cfg.monitor is None and columns[0] == NER:
            cfg.monitor = "f1"  # entity F1, not the accuracy of mostly-O tags
        if cfg.monitor is not None:
            metric = monitored_metric(cfg.monitor, columns)
            for key in ("checkpoint", "early_stopping"):
                cfg[key].monitor, cfg[key].mode = metric, "min" if metric.endswith("_loss") else "max"
        if not cfg.data.val_file:
            raise UserError("fit needs --data.val_file: validation, early stopping and the best checkpoint use it")
        if cfg.trainer.logger in (None, True):
            cfg.trainer.logger = [
                {
                    "class_path": "nasty_lightning.training.runlog.RunLogger",
                    "init_args": {"save_dir": str(root), "name": "", "version": ""},
                }
            ]
            if cfg.tensorboard:
                if importlib.util.find_spec("tensorboard") is None:
                    raise UserError("--tensorboard true needs TensorBoard: pip install tensorboard")
                cfg.trainer.logger.append(
                    {
                        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": str(root), "name": TENSORBOARD_DIR, "version": ""},
                    }
                )
        if cfg.trainer.max_epochs is not None and cfg.trainer.max_epochs < 1:
            raise UserError(
                f"--trainer.max_epochs must be at least 1, got {cfg.trainer.max_epochs} (the learning rate decays "
                "to 0 at the last epoch, so a fine-tuning run has a fixed number of epochs)"
            )
        checkpoints = Path(cfg.last_checkpoint.dirpath)
        if cfg.ckpt_path is not None:
            check_resume(cfg.ckpt_path, checkpoints / RESUMABLE)
        if rank_zero_only.rank == 0:
            resume = cfg.ckpt_path is not None
            self._exit_stack.enter_context(claim_run_folder(root, checkpoints, resume=resume, overwrite=cfg.overwrite))
            if not resume:  # the earlier run goes once everything else is checked (before_fit)
                saved, logs = earlier_run(root, checkpoints)
                if cfg.overwrite:
                    check_model_outside(cfg.model.model_name, saved)
                self._earlier_run = saved + logs

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        logged = {"val_loss", *self.model.val_scores.named("val")}
        for key in ("checkpoint", "early_stopping"):
            monitor = self.config_init[self.subcommand][key].monitor
            if self.subcommand == "fit" and monitor not in logged:
                raise UserError(
                    f"--{key}.monitor {monitor} is not a validation metric of this model ({', '.join(sorted(logged))})"
                )
        limit, wanted = self.model.max_positions, self.datamodule.hparams.max_length
        if limit is not None and wanted > limit:
            raise UserError(
                f"--data.max_length {wanted} exceeds the {limit} positions of {self.model.hparams.model_name!r}; "
                f"give --data.max_length {limit} or less"
            )

    def before_fit(self) -> None:
        """The last checks, then the earlier run's files go (``--overwrite``): a command refused for its
        settings, data or model leaves the folder as it was."""
        self.datamodule.check_files()
        if self.config_init[self.subcommand].ckpt_path is not None:
            last = Path(self.config_init[self.subcommand].last_checkpoint.dirpath) / RESUMABLE
            saved = load_checkpoint(last).get(RunRecord.SETTINGS_KEY, {})
            check_resume_settings(saved, resume_settings(self.trainer, self.model, self.datamodule), last)
        remove(self._earlier_run)

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config_init[self.subcommand].trainer
        callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, EpochBar()]  # Lightning's bar, with epochs counted from 1
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks[:0] = [RunRecord(self.command), RandomState()]  # before checkpoints, which save their state
        # last.ckpt after the other checkpoints, so that it holds their state after their own saves: a run
        # resumed from it knows its best.ckpt (else Lightning saves the next best beside it, as best-v1.ckpt)
        last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
        trainer.callbacks = [c for c in trainer.callbacks if c not in last] + last
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        """Score the best checkpoint on the test file, if there is one, and export it to RUN/model."""
        best = self.config_init[self.subcommand].checkpoint.best_model_path
        if not best:
            return
        summary: dict[str, Any] = {
            "epochs_run": self.trainer.current_epoch,
            "stopped_early": self.config_init[self.subcommand].early_stopping.stopped_epoch > 0,
        }
        if self.datamodule.hparams.test_file:
            [summary["test"]] = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        if self.trainer.is_global_zero:
            out = export_checkpoint(best, Path(self.trainer.default_root_dir) / "model", summary)
            saved = load_checkpoint(best)
            checkpoint = self.config_init[self.subcommand].checkpoint
            data = self.datamodule.hparams
            print(
                run_summary(
                    best,
                    checkpoint.monitor,
                    None if checkpoint.best_model_score is None else float(checkpoint.best_model_score),
                    saved.get("epoch", 0) + 1,
                    saved.get("global_step", 0),
                    time.monotonic() - self.started,
                    str(out),
                    data.test_file or self.datamodule.val_files[0],
                ),
                flush=True,
            )


def monitored_metric(monitor: str, columns: list[str]) -> str:
    """The logged metric that ``--monitor`` names: a column's accuracy, AllTags, or a metric by its name."""
    if monitor in columns:
        return metric_name(columns, monitor) if len(columns) > 1 else "val_acc"
    if monitor in (ALLTAGS, "f1", "macro_f1", "micro_f1"):
        return f"val_{monitor}"
    return monitor


def _seed_or_zero(seed: int | bool | None) -> int:
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def run(args: list[str] | None = None) -> None:
    """Run the LightningCLI on ``args`` (the command line when ``None``)."""
    quiet_lightning()
    with ExitStack() as exit_stack:
        NastyCLI(
            TokenTagger,
            TaggingDataModule,
            args=args,
            command=shlex.join(["nasty-train", *(sys.argv[1:] if args is None else args)]),
            exit_stack=exit_stack,
            seed_everything_default=42,
            trainer_defaults={
                "max_epochs": 3,
                "default_root_dir": "runs/default",
                "use_distributed_sampler": False,
                "log_every_n_steps": 10,  # Lightning's 50 leaves short runs without a training curve
                "enable_model_summary": False,  # the run's first lines say what it trains (progress.header)
            },
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # TokenTagger.configure_optimizers: AdamW, linear warmup and decay
            parser_class=NastyParser,
            parser_kwargs={
                "prog": "nasty-train",
                "description": "Fine-tune transformer encoders on CoNLL-U files.",
                **{name: {"description": f"nasty-train {name}: {text}."} for name, text in TRAINER_COMMANDS.items()},
            },
        )
