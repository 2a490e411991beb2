"""Secret entry for commands: PINs, passwords and passphrases at a hidden prompt, never argv.

Every hidden prompt goes through :func:`hidden_prompt`. Python's ``getpass``
(behind ``click.prompt(hide_input=True)``) falls back to an *echoing* read of
stdin, with only a ``GetPassWarning``, when there is no terminal to turn echo
off on; here that is refused with an error naming the non-interactive option
to use instead (``--password-fd``, ``--passphrase-fd``, ``--pin-stdin`` ...).
"""

from __future__ import annotations

import getpass
import sys
import warnings

import click

from sscard import errors


def hidden_prompt(label: str, *, instead: str, confirm: bool = False, what: str = "secret") -> str:
    """``what`` typed at a hidden prompt (twice with ``confirm``); never an echoing read.

    ``instead`` tells the user what to do without a terminal, e.g. ``"use
    --password-fd N"``; it ends the :class:`~sscard.errors.InvalidInput`
    (exit 7) raised when the input cannot be hidden.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            value: str = click.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
        except getpass.GetPassWarning:
            click.echo("", err=True)  # end the prompt's line
            raise errors.InvalidInput(
                f"no terminal to type the {what} on without it showing",
                [(what, instead)],
            ) from None
    return value


def read_pins(from_stdin: bool, prompts: list[tuple[str, bool]]) -> list[str]:
    """PINs for ``prompts`` ((label, confirm)) from a hidden prompt or stdin lines."""
    out: list[str] = []
    for label, confirm in prompts:
        if from_stdin:
            first = sys.stdin.readline().rstrip("\r\n")
            second = sys.stdin.readline().rstrip("\r\n") if confirm else first
        else:
            first = _pin_prompt(label)
            second = _pin_prompt(f"{label} (again)") if confirm else first
        if first != second:
            raise errors.InvalidInput("PIN not confirmed", [("pin", "the two entries differ")])
        out.append(first)
    return out


def _pin_prompt(label: str) -> str:
    return hidden_prompt(label, what="PIN", instead="use --pin-stdin (one PIN per line on stdin)")
