"""Options shared by several commands, defined once: same name, metavar and help pattern."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sscard.cli.secrets import ENV_PASSPHRASE, ENV_TOKEN_PIN
from sscard.layout import DEFAULT_PROFILE, card_profiles

F = TypeVar("F", bound=Callable[..., Any])


def profile_option(
    purpose: str, *, default: str | None = DEFAULT_PROFILE, dest: str = "profile"
) -> Callable[[F], F]:
    """``--profile NAME|FILE``: the card profile (a shipped name or a profile file) ``purpose``.

    ``purpose`` finishes the help sentence ("whose key slots to use", ...). Every
    command with ``--profile`` takes it from here, so it means one thing everywhere.
    """
    shipped = ", ".join(card_profiles())
    return click.option(
        "--profile",
        dest,
        default=default,
        show_default=default is not None,
        metavar="NAME|FILE",
        callback=_check_profile,
        help=f"Card profile {purpose}: a shipped name ({shipped}) or a profile file.",
    )


def _check_profile(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A shipped card profile name or an existing file; anything else is a usage error."""
    if value is None or value in card_profiles() or Path(value).is_file():
        return value
    raise click.BadParameter(
        f"{value!r} is neither a shipped card profile ({', '.join(card_profiles())}) "
        "nor a profile file"
    )


def passphrase_fd_option(
    what: str = "key store passphrase", env: str = ENV_PASSPHRASE
) -> Callable[[F], F]:
    """``--passphrase-fd N``: the ``what`` from a file descriptor, else ``$env``, else a prompt."""
    return click.option(
        "--passphrase-fd",
        type=int,
        metavar="N",
        help=f"Read the {what} from file descriptor N (one line). "
        f"Else ${env}, else a hidden prompt.",
    )


def password_fd_option(f: F) -> F:
    """``--password-fd N``: an operator password from a file descriptor, else a prompt."""
    return click.option(
        "--password-fd",
        type=int,
        metavar="N",
        help="Read the password from file descriptor N (one line); else a hidden prompt.",
    )(f)


def kdf_cost_option(what: str, default: int = 17) -> Callable[[F], F]:
    """``--kdf-cost LOG2N``: the scrypt cost of ``what``."""
    return click.option(
        "--kdf-cost",
        type=click.IntRange(10, 20),
        default=default,
        show_default=True,
        metavar="LOG2N",
        help=f"scrypt cost of {what} as log2(N); lower it only for tests.",
    )


def token_options(f: F) -> F:
    """``--token LABEL``, ``--module PATH`` and ``--pin-fd N`` of a PKCS#11 token."""
    f = click.option(
        "--pin-fd",
        type=int,
        metavar="N",
        help=f"Read the token user PIN from file descriptor N. Else ${ENV_TOKEN_PIN}, "
        "else a hidden prompt.",
    )(f)
    f = click.option(
        "--module",
        "module_path",
        metavar="PATH",
        default=None,
        help="PKCS#11 module (default: SoftHSM2's libsofthsm2.so).",
    )(f)
    return click.option("--token", "token_label", required=True, metavar="LABEL")(f)


def platform_options(*, required: bool, purpose: str = "") -> Callable[[F], F]:
    """``--platform URL --cert --key --ca``: the exchange platform and this service point's
    TLS identity, from the same environment variables for every command that talks to it.

    ``purpose`` ends the ``--platform`` help (e.g. "; checked when given").
    """
    path = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.option("--platform", envvar="SSCARD_PLATFORM_URL", metavar="URL",
                     required=required,
                     help=f"The exchange platform, https://HOST:PORT ($SSCARD_PLATFORM_URL)"
                     f"{purpose}."),
        click.option("--cert", envvar="SSCARD_EXCHANGE_CERT", type=path, required=required,
                     help="This service point's client certificate, PEM ($SSCARD_EXCHANGE_CERT)."),
        click.option("--key", envvar="SSCARD_EXCHANGE_KEY", type=path, required=required,
                     help="Its private key, PEM, mode 0600 ($SSCARD_EXCHANGE_KEY)."),
        click.option("--ca", envvar="SSCARD_EXCHANGE_CA", type=path, required=required,
                     help="The platform CA certificate, PEM ($SSCARD_EXCHANGE_CA)."),
    ]  # fmt: skip

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
