"""Options shared by several commands, defined once: same name, metavar and help pattern."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from sscard.cli.secrets import ENV_PASSPHRASE
from sscard.i18n import N_, _
from sscard.layout import DEFAULT_PROFILE, card_profiles

F = TypeVar("F", bound=Callable[..., Any])


class TemplateHelpOption(click.Option):
    """An option whose help is a marked template filled when the help is shown.

    ``help_template`` (marked with ``N_``) has named placeholders; ``fragments``
    fill them with marked texts translated at render time (``_(text)``),
    ``values`` with texts shown as they are (names, lists of profiles). ``help``
    stays the English text, so everything that reads it (tests, docs) sees what
    it always did; the help screen shows the template in the active language.
    """

    def __init__(
        self,
        param_decls: Any = None,
        *,
        help_template: str,
        fragments: Mapping[str, str] | None = None,
        values: Mapping[str, str] | None = None,
        **attrs: Any,
    ) -> None:
        self.help_template = help_template
        self.help_fragments = dict(fragments or {})
        self.help_values = dict(values or {})
        english = help_template.format(**self.help_fragments, **self.help_values)
        super().__init__(param_decls, help=english, **attrs)

    def translated_help(self) -> str:
        """The help in the active language (the template and its fragments translated)."""
        fragments = {name: _(text) for name, text in self.help_fragments.items()}
        return _(self.help_template).format(**fragments, **self.help_values)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        english = self.help
        self.help = self.translated_help()
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = english


def profile_option(
    purpose: str, *, default: str | None = DEFAULT_PROFILE, dest: str = "profile"
) -> Callable[[F], F]:
    """``--profile NAME|FILE``: the card profile (a shipped name or a profile file) ``purpose``.

    ``purpose`` finishes the help sentence ("whose key slots to use", ...); mark it
    with ``N_`` (it is translated when the help is shown). Every command with
    ``--profile`` takes it from here, so it means one thing everywhere.
    """
    return click.option(
        "--profile",
        dest,
        cls=TemplateHelpOption,
        default=default,
        show_default=default is not None,
        metavar="NAME|FILE",
        callback=_check_profile,
        help_template=N_("Card profile {purpose}: a shipped name ({shipped}) or a profile file."),
        fragments={"purpose": purpose},
        values={"shipped": ", ".join(card_profiles())},
    )


def _check_profile(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A shipped card profile name or an existing file; anything else is a usage error."""
    if value is None or value in card_profiles() or Path(value).is_file():
        return value
    raise click.BadParameter(
        _("{value!r} is neither a shipped card profile ({shipped}) nor a profile file").format(
            value=value, shipped=", ".join(card_profiles())
        )
    )


def passphrase_fd_option(
    what: str = N_("key store passphrase"), env: str = ENV_PASSPHRASE
) -> Callable[[F], F]:
    """``--passphrase-fd N``: the ``what`` from a file descriptor, else ``$env``, else a prompt.

    ``what`` is marked with ``N_`` (translated when the help is shown).
    """
    return click.option(
        "--passphrase-fd",
        cls=TemplateHelpOption,
        type=int,
        metavar="N",
        help_template=N_(
            "Read the {what} from file descriptor N (one line). Else ${env}, else a hidden prompt."
        ),
        fragments={"what": what},
        values={"env": env},
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
    """``--kdf-cost LOG2N``: the scrypt cost of ``what`` (marked with ``N_``)."""
    return click.option(
        "--kdf-cost",
        cls=TemplateHelpOption,
        type=click.IntRange(10, 20),
        default=default,
        show_default=True,
        metavar="LOG2N",
        help_template=N_("scrypt cost of {what} as log2(N); lower it only for tests."),
        fragments={"what": what},
    )


def token_options(f: F) -> F:
    """``--token LABEL``, ``--module PATH`` and ``--pin-fd N`` of a PKCS#11 token."""
    f = click.option(
        "--pin-fd",
        type=int,
        metavar="N",
        help="Read the token user PIN from file descriptor N. Else $SSCARD_TOKEN_PIN, "
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


PLATFORM_HELP = N_("The exchange platform, https://HOST:PORT ($SSCARD_PLATFORM_URL).")


def platform_options(*, required: bool, platform_help: str = PLATFORM_HELP) -> Callable[[F], F]:
    """``--platform URL --cert --key --ca``: the exchange platform and this service point's
    TLS identity, from the same environment variables for every command that talks to it.

    ``platform_help`` replaces the ``--platform`` help: a whole sentence marked with
    ``N_`` (e.g. one that says what the platform is used for).
    """
    path = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.option("--platform", envvar="SSCARD_PLATFORM_URL", metavar="URL",
                     required=required, help=platform_help),
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
