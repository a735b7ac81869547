"""jsonargparse (and argparse) internals (checked on jsonargparse 4.53; ``pyproject.toml`` keeps it below 5).

``tests/_compat/test_jsonargparse.py`` fails, naming the internal, when a release changes one of them. Light:
``nasty-train --help`` imports this before PyTorch.
"""

from __future__ import annotations

import argparse


def set_help(parser: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Replace the ``--help`` text of the argument of ``parser`` that stores ``dest`` (``trainer.precision``).

    Neither argparse nor jsonargparse can change an argument once added; its actions are in argparse's private
    ``parser._actions`` (every Python 3 version; jsonargparse looks there too), and ``Action.help`` is public.
    """
    found = [action for action in parser._actions if action.dest == dest]
    if not found:
        raise KeyError(f"no argument {dest!r} in {parser.prog}")
    for action in found:
        action.help = text


def failed_parser(parser: argparse.ArgumentParser, error: Exception | None) -> argparse.ArgumentParser:
    """The parser an ``error`` of ``parser.error(message, error)`` is about: the subcommand's, when jsonargparse
    found an option that the subcommand does not accept, else ``parser``.

    jsonargparse marks such an error with the undocumented ``subcommand_parser`` attribute (4.x), and its own
    ``ArgumentParser.error`` reads it the same way.
    """
    return getattr(error, "subcommand_parser", None) or parser
