"""Errors the command line reports as one line and exit status 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or configuration, explained in the message."""


class DataError(UserError):
    """A problem at a given line of an input file."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


class Interrupted(Exception):
    """A run stopped by a signal (Ctrl-C, SIGTERM) after saving its state; exits with 128 + the signal number,
    as a shell reports a process ended by that signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum
