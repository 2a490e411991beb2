"""Secret entry for commands: PINs, passwords and passphrases, never from argv.

A secret comes from a file descriptor (``--passphrase-fd N``, ``--password-fd
N``, ``--pin-fd N``), else, where allowed, an environment variable, else a
hidden prompt. Every hidden prompt goes through :func:`hidden_prompt`. Python's
``getpass`` (behind ``click.prompt(hide_input=True)``) falls back to an
*echoing* read of stdin, with only a ``GetPassWarning``, when there is no
terminal to turn echo off on; here that is refused with an error naming the
non-interactive option to use instead (``--password-fd``, ``--passphrase-fd``,
``--pin-stdin`` ...).
"""

from __future__ import annotations

import getpass
import os
import sys
import warnings

import click

from sscard import errors

ENV_PASSPHRASE = "SSCARD_KEYSTORE_PASSPHRASE"
ENV_TOKEN_PIN = "SSCARD_TOKEN_PIN"


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


def read_fd(fd: int, option: str = "--passphrase-fd", what: str = "passphrase") -> str:
    """One line (the ``what``) from file descriptor ``fd``, left open; ``option`` names it."""
    try:
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as f:
            line = f.readline()
    except OSError:
        raise errors.InvalidInput(
            f"cannot read {what}", [(option, f"{fd} is not readable")]
        ) from None
    return line.rstrip("\r\n")


def read_secret(
    fd: int | None,
    label: str,
    *,
    confirm: bool = False,
    env: bool = True,
    env_name: str = ENV_PASSPHRASE,
) -> str:
    """A passphrase or PIN: from file descriptor ``fd``, else ``$env_name``, else a prompt."""
    if fd is not None:
        return read_fd(fd)
    if env and os.environ.get(env_name):
        return os.environ[env_name]
    instead = (
        f"use --passphrase-fd N or ${env_name}"
        if env
        else "type it at a terminal (custodian and transport passphrases are typed, never read "
        "from a file or the environment)"
    )
    return hidden_prompt(label, confirm=confirm, what="passphrase", instead=instead)


def read_password(
    fd: int | None, label: str, *, confirm: bool = False, instead: str = "use --password-fd N"
) -> str:
    """An operator password: from file descriptor ``fd``, else a hidden prompt (no variable)."""
    if fd is not None:
        return read_fd(fd, "--password-fd", "password")
    return hidden_prompt(label, confirm=confirm, what="password", instead=instead)


def read_token_pin(fd: int | None, token: str) -> str:
    """A PKCS#11 token's user PIN: from ``fd``, else ``$SSCARD_TOKEN_PIN``, else a prompt."""
    if fd is not None:
        return read_fd(fd, "--pin-fd", "PIN")
    if os.environ.get(ENV_TOKEN_PIN):
        return os.environ[ENV_TOKEN_PIN]
    return hidden_prompt(
        f"User PIN for token {token}", what="PIN", instead=f"use --pin-fd N or ${ENV_TOKEN_PIN}"
    )


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
