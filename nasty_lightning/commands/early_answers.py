"""Answers to ``fit --help`` and to a misspelt trainer option before PyTorch and Lightning are imported.

Building the trainer commands' parser means importing Lightning, several seconds. The first time a trainer
command's parser is built, its help and its options are written to ``~/.cache/nasty_lightning/cli/`` (keyed by
this package's files, the versions of the libraries that make the options, and the terminal's width); from then
on ``nasty-train fit --help`` prints the remembered help, and an option of the command line that the command does
not have gets its one-line error, at once. Anything else goes on to the real parser.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("lightning", "jsonargparse", "torch", "transformers", "torchmetrics")


def _cache_file(command: str) -> Path:
    key = hashlib.sha256()
    package = Path(__file__).parents[1]
    for path in sorted(package.rglob("*.py")):
        stat = path.stat()
        key.update(f"{path.relative_to(package)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    for name in LIBRARIES:
        try:
            key.update(f"{name} {version(name)}\n".encode())
        except PackageNotFoundError:
            key.update(f"{name} -\n".encode())
    key.update(f"{sys.version} {shutil.get_terminal_size().columns}".encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nasty_lightning" / "cli"
    return root / f"{command}-{key.hexdigest()[:16]}.json"


def options_of(help: str) -> list[str]:
    """The options a parser's help lists, one a line (``  --data.batch_size BATCH_SIZE``, ``  -c CONFIG, --config
    CONFIG``), less the ``+`` forms of list options."""
    return sorted({o for o in re.findall(r"^\s*(?:-\w[^,\n]*, )?(--[\w.\-]+)", help, re.M) if not o.endswith("+")})


def unknown_options(message: str, known: list[str]) -> str:
    """One line for ``unknown`` options, each with the closest known ones: ``unknown option --data.batchsize, did
    you mean --data.batch_size or --data.eval_batch_size?``."""
    return "; ".join(
        f"unknown option {option}"
        + (
            f", did you mean {' or '.join(close)}?"
            if (close := difflib.get_close_matches(option, known, 2, 0.75))
            else ""
        )
        for option in message
    )


def remember(command: str, parser: Any) -> None:
    """Write the help and options of ``command``'s parser where ``answer_early`` finds them, unless they are there."""
    path = _cache_file(command)
    if path.is_file():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_text(json.dumps({"help": (text := parser.format_help()), "options": options_of(text)}))
        partial.replace(path)
    except OSError:  # a read-only home: the answers just come later, from the parser
        return


def answer_early(command: str, args: list[str]) -> None:
    """Print ``command``'s remembered help (``args`` is ``--help``), or the error of an option ``command`` does not
    have, and exit; return when nothing is remembered or the real parser must decide."""
    path = _cache_file(command)
    try:
        remembered = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if args in (["--help"], ["-h"]):
        sys.stdout.write(remembered["help"])
        sys.exit(0)
    known = remembered["options"]
    given = [a.partition("=")[0].removesuffix("+") for a in args if a.startswith("--")]  # --trainer.callbacks+=X
    # an option below a class given on the command line (--trainer.callbacks.at_step) is the parser's to judge
    unknown = [o for o in given if o not in known and not any(o.startswith(k + ".") for k in known if "." in k)]
    if unknown:
        prog = f"nasty-train {command}"
        print(f"{prog}: error: {unknown_options(unknown, known)} ({prog} --help lists every option)", file=sys.stderr)
        sys.exit(2)
