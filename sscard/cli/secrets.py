"""Secret entry for commands: PINs, passwords and passphrases, never from argv.

A secret comes from a file descriptor (``--passphrase-fd N``, ``--password-fd
N``, ``--pin-fd N``), else, where allowed, an environment variable, else a
hidden prompt. Every hidden prompt goes through :func:`hidden_prompt`. Python's
``getpass`` (behind ``click.prompt(hide_input=True)``) falls back to an
*echoing* read of stdin, with only a ``GetPassWarning``, when there is no
terminal to turn echo off on; here that is refused with an error naming the
non-interactive option to use instead (``--password-fd``, ``--passphrase-fd``,
``--pin-stdin`` ...).

Prompt labels arrive translated (the caller's ``_()``); ``what`` (the kind of
secret) arrives marked with ``N_`` and is translated where it is shown.
"""

from __future__ import annotations

import os
import sys
import warnings

import click

from sscard import errors
from sscard.i18n import N_, _

ENV_PASSPHRASE = "SSCARD_KEYSTORE_PASSPHRASE"
ENV_TOKEN_PIN = "SSCARD_TOKEN_PIN"


def hidden_prompt(
    label: str, *, instead: str, confirm: bool = False, what: str = N_("secret")
) -> str:
    """``what`` typed at a hidden prompt (twice with ``confirm``); never an echoing read.

    ``instead`` tells the user what to do without a terminal, e.g. ``"use
    --password-fd N"`` (translated by the caller); it ends the
    :class:`~sscard.errors.InvalidInput` (exit 7) raised when the input cannot be
    hidden. ``label`` is the prompt (translated); ``what`` is marked with ``N_``.
    """
    import getpass  # and termios: loaded for a prompt, not for every command

    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            value: str = click.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
        except getpass.GetPassWarning:
            click.echo("", err=True)  # end the prompt's line
            raise errors.InvalidInput(
                _("no terminal to type the {what} on without it showing").format(what=_(what)),
                [(what, instead)],
            ) from None
    return value


def read_fd(fd: int, option: str = "--passphrase-fd", what: str = N_("passphrase")) -> str:
    """One line (the ``what``, marked with ``N_``) from file descriptor ``fd``, left open;
    ``option`` names it."""
    try:
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as f:
            line = f.readline()
    except OSError:
        raise errors.InvalidInput(
            _("cannot read {what}").format(what=_(what)),
            [(option, _("{fd} is not readable").format(fd=fd))],
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
        _("use --passphrase-fd N or ${env}").format(env=env_name)
        if env
        else _(
            "type it at a terminal (custodian and transport passphrases are typed, never read "
            "from a file or the environment)"
        )
    )
    return hidden_prompt(label, confirm=confirm, what=N_("passphrase"), instead=instead)


def read_password(
    fd: int | None, label: str, *, confirm: bool = False, instead: str | None = None
) -> str:
    """An operator password: from file descriptor ``fd``, else a hidden prompt (no variable).

    ``instead`` (translated) defaults to "use --password-fd N".
    """
    if fd is not None:
        return read_fd(fd, "--password-fd", N_("password"))
    if instead is None:
        instead = _("use --password-fd N")
    return hidden_prompt(label, confirm=confirm, what=N_("password"), instead=instead)


def read_token_pin(fd: int | None, token: str) -> str:
    """A PKCS#11 token's user PIN: from ``fd``, else ``$SSCARD_TOKEN_PIN``, else a prompt."""
    if fd is not None:
        return read_fd(fd, "--pin-fd", N_("PIN"))
    if os.environ.get(ENV_TOKEN_PIN):
        return os.environ[ENV_TOKEN_PIN]
    return hidden_prompt(
        _("User PIN for token {token}").format(token=token),
        what=N_("PIN"),
        instead=_("use --pin-fd N or ${env}").format(env=ENV_TOKEN_PIN),
    )


def read_pins(from_stdin: bool, prompts: list[tuple[str, bool]]) -> list[str]:
    """PINs for ``prompts`` ((label, confirm)) from a hidden prompt or stdin lines.

    The labels arrive translated (the caller's ``_()``)."""
    out: list[str] = []
    for label, confirm in prompts:
        if from_stdin:
            first = sys.stdin.readline().rstrip("\r\n")
            second = sys.stdin.readline().rstrip("\r\n") if confirm else first
        else:
            first = _pin_prompt(label)
            second = _pin_prompt(_("{label} (again)").format(label=label)) if confirm else first
        if first != second:
            raise errors.InvalidInput(
                _("PIN not confirmed"), [("pin", _("the two entries differ"))]
            )
        out.append(first)
    return out


def _pin_prompt(label: str) -> str:
    return hidden_prompt(
        label, what=N_("PIN"), instead=_("use --pin-stdin (one PIN per line on stdin)")
    )
