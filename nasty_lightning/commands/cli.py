"""``nasty-train``: one command for training (fit, validate, test: a LightningCLI, in
``train_cli``) and for working with exported models (eval, tag, export, quantize, serve: jsonargparse on
their functions).

This module stays light: ``nasty-train --help`` and a mistyped command answer before PyTorch, Lightning or
transformers are imported, and each command imports only what it needs.
"""

from __future__ import annotations

import ctypes
import difflib
import gc
import os
import platform
import re
import shlex
import sys
from collections.abc import Mapping
from typing import NoReturn

from jsonargparse import ArgumentParser, auto_cli

from nasty_lightning._compat.jsonargparse import failed_parser
from nasty_lightning.commands.early_answers import answer_early, options_of, unknown_options
from nasty_lightning.errors import Interrupted, UserError

TRAINER_COMMANDS = {
    "fit": "fine-tune a model on a training file, validating on a validation file",
    "validate": "score a checkpoint on --data.val_file",
    "test": "score a checkpoint on --data.test_file",
}
MODEL_COMMANDS = {
    "eval": "score an exported model on a labelled file: accuracy and a per-tag table",
    "tag": "tag a CoNLL-U or plain-text file with an exported model",
    "export": "write a checkpoint as a Hugging Face model directory with a model card",
    "quantize": "write an INT8 copy of an exported model, checked on a labelled file",
    "serve": "tag sentences sent over HTTP as JSON, batching concurrent requests",
}
# The fine-tuning guide's flags (README, "Options people change"), accepted by fit, validate and test as aliases
# of our options: the guide's examples run unchanged.
GUIDE_OPTIONS = {
    "--model": "--model.model_name",
    "--train": "--data.train_file",
    "--validation": "--data.val_file",
    "--test": "--data.test_file",
    "--output": "--trainer.default_root_dir",
    "--epochs": "--trainer.max_epochs",
    "--batch-size": "--data.batch_size",
    "--learning-rate": "--model.learning_rate",
    "--max-length": "--data.max_length",
    "--eval-steps": "--validation.every_n_steps",
}
USAGE = "\n".join(
    [
        "usage: nasty-train COMMAND [options]",
        "",
        "Fine-tune transformer encoders on CoNLL-U treebanks and NER files, and use the models.",
        "",
        "commands:",
        *(f"  {name:<9} {text}" for name, text in {**TRAINER_COMMANDS, **MODEL_COMMANDS}.items()),
        "",
        "nasty-train COMMAND --help lists every option of a command, with its documentation.",
    ]
)


class SuggestOptions:
    """A jsonargparse parser mixin: a mistake on the command line is one line on standard error (no usage
    listing), and an unrecognised option gets a "did you mean" with the closest ones."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = failed_parser(self, ex)
        unknown = re.findall(r"(?:^|\s)(--[\w.\-]+)", message.partition("nrecognized arguments:")[2])
        message = unknown_options(unknown, options_of(parser.format_help())) if unknown else _one_line(message)
        if not self.exit_on_error:
            super().error(message, ex)
        prog = parser.prog.replace(" [options]", "")
        print(f"{prog}: error: {message} ({prog} --help lists every option)", file=sys.stderr)
        sys.exit(2)


def _one_line(message: str) -> str:
    """jsonargparse's message on one line: ``Parser key "data.batch_size":\n  Expected ...`` becomes
    ``--data.batch_size: Expected ...``."""
    message = re.sub(r'Parser key "([\w.]+)":', r"--\1:", message)
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def guide_options(argv: list[str]) -> list[str]:
    """``argv`` with the guide's flags (``GUIDE_OPTIONS``) as the options they stand for. ``--model`` followed by
    a config (a file, or a mapping in braces) keeps LightningCLI's meaning: the model's settings."""
    out = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in GUIDE_OPTIONS and not (
            name == "--model" and _is_model_config(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
        ):
            arg = GUIDE_OPTIONS[name] + eq + value
        out.append(arg)
    return out


def _is_model_config(value: str) -> bool:
    return value.lstrip().startswith("{") or value.endswith((".yaml", ".yml", ".json"))


class ModelCommandParser(SuggestOptions, ArgumentParser):
    """The parser of eval, tag, export, quantize and serve."""


def _model_command(name: str):
    """The function behind eval, tag, export, quantize or serve, imported only when it is run."""
    if name == "eval":
        from nasty_lightning.commands.evaluate import evaluate

        return evaluate
    if name == "tag":
        from nasty_lightning.commands.tagging import tag

        return tag
    if name == "quantize":
        from nasty_lightning.inference.quantize import quantize

        return quantize
    if name == "serve":
        from nasty_lightning.inference.serving import serve

        return serve
    from nasty_lightning.inference.export import export

    return export


def main(args: list[str] | None = None) -> None:
    """Entry point of ``nasty-train``; problems with input or options end with one line and exit status 2."""
    argv = sys.argv[1:] if args is None else args
    # oneDNN keeps a compiled kernel for every matrix shape it meets (up to 1,024 by default); with
    # bf16-mixed on CPU and batches of varying shape, a benchmark fit peaked 500 MB higher than with 64,
    # which was as fast (docs/benchmarks.md). Read at oneDNN's first use; a value set outside wins.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(USAGE, file=sys.stdout if command else sys.stderr)
        sys.exit(0 if command else 2)
    if command == "predict":
        print(
            "nasty-train: error: there is no predict command: tag a file with nasty-train tag --model_dir RUN/model "
            "--input FILE --output TAGGED (export a checkpoint first with nasty-train export)",
            file=sys.stderr,
        )
        sys.exit(2)
    if command not in TRAINER_COMMANDS and command not in MODEL_COMMANDS and not command.startswith("-"):
        close = difflib.get_close_matches(command, [*TRAINER_COMMANDS, *MODEL_COMMANDS], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        commands = ", ".join([*TRAINER_COMMANDS, *MODEL_COMMANDS])
        print(f"nasty-train: error: unknown command '{command}' (commands: {commands}){hint}", file=sys.stderr)
        sys.exit(2)
    from nasty_lightning.commands.quiet import quiet

    quiet()
    try:
        if command in MODEL_COMMANDS:
            result = auto_cli(
                _model_command(command),
                args=argv[1:],
                as_positional=False,
                parser_class=ModelCommandParser,
                prog=f"nasty-train {command}",
            )
            if command == "export":
                print(f"wrote {result}")
        else:
            answer_early(command, guide_options(argv[1:]))
            from nasty_lightning.commands.train_cli import run

            if args is None:  # LightningCLI reads sys.argv (and warns when given both)
                sys.argv[1:] = guide_options(argv)
            run(None if args is None else guide_options(args))
    except UserError as err:
        print(f"nasty-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        resume = shlex.join(["nasty-train", *_without_ckpt_path(argv), "--ckpt_path", "last"])
        print(f"nasty-train: interrupted: {err}. Resume with:\n  {resume}", file=sys.stderr)
        sys.exit(err.exit_status)
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        print("nasty-train: interrupted", file=sys.stderr)
        sys.exit(130)


def entry() -> None:
    """The ``nasty-train`` program: ``main`` in a process that runs one command and ends.

    Importing PyTorch, transformers and Lightning makes millions of objects that live as long as the process.
    At CPython's default thresholds the cyclic garbage collector rescans them over and over while they load,
    and once more at exit: 1.3 of the 4.5 s that tagging one sentence took (docs/benchmarks.md). Here collections
    stay on, less often, and what is left when the command has finished is freed by the process's exit.
    ``main`` itself leaves the collector alone, for callers that go on after it (the tests).
    """
    gc.set_threshold(100_000, 20, 10)
    keep_freed_memory()
    try:
        try:
            main()
        finally:
            sys.stdout.flush()  # here, where a closed pipe can be caught, not at the interpreter's exit
    except BrokenPipeError:  # nasty-train eval ... | head -1: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left in the buffer goes nowhere
        sys.exit(141)  # as a program that SIGPIPE ends
    gc.freeze()  # every file is written and closed: no last collection to wait for at exit


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Make the C allocator (glibc's malloc) reuse freed memory instead of handing it back to the system;
    returns whether it did.

    By default glibc serves every block above 32 MB (the word-embedding gradient of MiniLM is 47 MB, and
    one is made at every step) with a fresh ``mmap`` and returns it with ``munmap``, and gives back the
    top of its heap whenever enough of it is free: every step then pays the kernel to map and zero the same
    memory again (a benchmark fit trained 1.06x as fast with this, docs/benchmarks.md). Here all blocks come from
    the heap and freed memory stays in the process for the next step. Left alone where the environment sets
    any ``MALLOC_`` variable (what you set wins) and on other C libraries.
    """
    environ = os.environ if environ is None else environ
    if any(k.startswith("MALLOC_") for k in environ) or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def _without_ckpt_path(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if not skip and arg != "--ckpt_path" and not arg.startswith("--ckpt_path="):
            kept.append(arg)
        skip = arg == "--ckpt_path"
    return kept
