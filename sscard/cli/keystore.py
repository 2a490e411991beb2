"""The ``--keystore`` option and the security module it opens (one provider: keys.provider)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from sscard.cli.keys_cmd import ENV_PASSPHRASE, read_secret
from sscard.keys.provider import ENV_KEYSTORE, open_security_module
from sscard.keys.security_module import SecurityModule
from sscard.layout.model import Profile

F = TypeVar("F", bound=Callable[..., Any])


def keystore_options(f: F) -> F:
    """Add ``--keystore`` and ``--passphrase-fd`` to a command."""
    f = click.option(
        "--passphrase-fd",
        type=int,
        metavar="N",
        help=f"Read the key store passphrase (or token PIN) from file descriptor N. "
        f"Else ${ENV_PASSPHRASE}, else a hidden prompt.",
    )(f)
    f = click.option(
        "--keystore",
        envvar=ENV_KEYSTORE,
        metavar="STORE",
        help="Keys for this card: a key store file, pkcs11:TOKEN-LABEL, or 'dev' for the "
        f"published development keys (emulated cards only). Default: ${ENV_KEYSTORE}.",
    )(f)
    return f


def security_module(
    keystore: str | None, passphrase_fd: int | None, profile: Profile
) -> SecurityModule:
    """Open the security module for ``profile`` (production profiles refuse 'dev')."""
    return open_security_module(
        keystore,
        slots=profile.key_scheme.slots,
        production=profile.production,
        secret=lambda label: read_secret(passphrase_fd, label),
    )
