"""The jsonargparse and argparse internals ``nasty_lightning._compat.jsonargparse`` relies on."""

from __future__ import annotations

import pytest
from jsonargparse import ActionConfigFile, ArgumentParser

from nasty_lightning._compat.jsonargparse import failed_parser, set_help


def test_set_help_changes_what_help_shows():
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--trainer.precision", type=str, default="32", help="Lightning's text")
    set_help(parser, "trainer.precision", "Our text about precision")
    shown = parser.format_help()
    assert "Our text about precision" in shown and "Lightning's text" not in shown, (
        "argparse no longer keeps a parser's arguments in the private parser._actions: set_help changes nothing"
    )
    with pytest.raises(KeyError):
        set_help(parser, "trainer.missing", "text")


def test_failed_parser_is_the_subcommands_for_an_option_it_does_not_take():
    errors = []

    class Recording(ArgumentParser):
        def error(self, message, ex=None):
            errors.append((message, ex))
            raise SystemExit(2)

    root = Recording(prog="root")
    root.add_argument("--config", action=ActionConfigFile)
    fit = Recording(prog="root fit")
    fit.add_argument("--epochs", type=int, default=1)
    root.add_subcommands().add_subcommand("fit", fit)
    with pytest.raises(SystemExit):
        root.parse_args(["--config", '{"fit": {"epoch": 2}}', "fit"])
    message, error = errors[-1]
    assert "epoch" in message
    assert failed_parser(root, error) is fit, (
        "jsonargparse no longer marks the error of an option a subcommand does not take with subcommand_parser: "
        "nasty-train's 'did you mean' suggests options of the wrong parser"
    )
    assert failed_parser(root, None) is root and failed_parser(root, ValueError()) is root
