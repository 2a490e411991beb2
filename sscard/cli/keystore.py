"""The ``--keystore`` option and the security module it opens (one provider: keys.provider)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sscard.cli.options import passphrase_fd_option
from sscard.cli.secrets import read_secret
from sscard.i18n import N_
from sscard.keys import ENV_KEYSTORE

if TYPE_CHECKING:
    from sscard.keys.security_module import SecurityModule
    from sscard.layout.model import Profile

F = TypeVar("F", bound=Callable[..., Any])


def keystore_options(f: F) -> F:
    """Add ``--keystore`` and ``--passphrase-fd`` to a command."""
    f = passphrase_fd_option(N_("key store passphrase (or token PIN)"))(f)
    f = click.option(
        "--keystore",
        envvar=ENV_KEYSTORE,
        metavar="STORE",
        help="Keys for this card: a key store file, pkcs11:TOKEN-LABEL, psam:READER (the "
        "service point's PSAM; psam:virtual:PATH for an emulated one), or 'dev' for the "
        "published development keys (emulated cards only). Default: $SSCARD_KEYSTORE.",
    )(f)
    return f


def security_module(
    keystore: str | None, passphrase_fd: int | None, profile: Profile
) -> SecurityModule:
    """Open the security module for ``profile`` (production profiles refuse 'dev')."""
    from sscard.keys.provider import open_security_module  # the key stores load only now

    return open_security_module(
        keystore,
        slots=profile.key_scheme.slots,
        production=profile.production,
        secret=lambda label: read_secret(passphrase_fd, label),
    )
