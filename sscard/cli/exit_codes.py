"""The one mapping from library errors to stable exit codes (docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum

from sscard import errors


class ExitCode(IntEnum):
    """Exit codes of ``sscard``; stable, documented in docs/cli.md."""

    OK = 0
    FAILED = 1
    USAGE = 2
    WRONG_PIN = 3
    BLOCKED = 4
    NO_CARD = 5
    AUTH = 6
    INVALID_INPUT = 7


# Most specific first: an error's exit code is that of the first class it is an
# instance of. PinIncorrect is also an AuthenticationError, so it comes first.
_TABLE: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (errors.PinIncorrect, ExitCode.WRONG_PIN),
    (errors.BlockedError, ExitCode.BLOCKED),
    (errors.TransportError, ExitCode.NO_CARD),
    (errors.AuthenticationError, ExitCode.AUTH),
    (errors.InvalidInput, ExitCode.INVALID_INPUT),
    (errors.OperationFailed, ExitCode.FAILED),
)
"""Every :class:`~sscard.errors.SscardError` is under one of these categories, so the
table is total for library errors (tests/test_errors.py checks it against docs/cli.md)."""


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for ``error``; an error of no category (not sscard's) is a failure (1)."""
    for cls, code in _TABLE:
        if isinstance(error, cls):
            return code
    return ExitCode.FAILED


def error_kind(error: BaseException) -> str:
    """A stable machine-readable name for the error (its class name)."""
    return type(error).__name__
