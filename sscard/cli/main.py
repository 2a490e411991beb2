"""Entry point of the ``sscard`` command: global options, sub-commands, error mapping."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

import sscard.applets  # noqa: F401  (registers the 'virtual:PATH' reader form)
from sscard import __version__, errors
from sscard import log as sslog
from sscard.cli import language
from sscard.cli.context import STORE_HELP, CliState, add_json_options
from sscard.cli.exit_codes import ExitCode, error_kind, exit_code_for
from sscard.i18n import _
from sscard.paths import ENV_STORE, default_store


class SscardGroup(click.Group):
    """A group that turns library errors into one message and a stable exit code.

    It also sets the run's language before Click parses the arguments, and
    shows every help text in it (:mod:`sscard.cli.language`).
    """

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        language.choose(argv)
        language.install_click_texts()
        language.localize(self)
        return super().main(argv, *a, **kw)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.SscardError as exc:
            st = ctx.find_object(CliState) or CliState()
            code = exit_code_for(exc)
            extra: dict[str, Any] = {"national_code": int(exc.national_code)}
            national = _national_message(int(exc.national_code))
            if national:
                extra["national_message"] = national
            for attr in ("sw", "tries_left"):
                value = getattr(exc, attr, None)
                if value is not None:
                    extra[attr] = f"{value:04X}" if attr == "sw" else value
            problems = getattr(exc, "problems", None)
            if problems:
                extra["problems"] = [{"field": f, "problem": p} for f, p in problems]
            from sscard.cli.hints import hint_for  # loaded only when an error is shown

            hint = hint_for(exc)
            if hint:
                extra["hint"] = hint
            st.error(error_kind(exc), str(exc), int(code), **extra)
            ctx.exit(int(code))


@click.group(cls=SscardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--reader",
    "-r",
    envvar="SSCARD_READER",
    metavar="NAME",
    help="Reader to use: exact name or a unique case-insensitive part of it, or "
    "'virtual:PATH' for the in-process emulated card stored at PATH. "
    "Default: $SSCARD_READER, else the only reader present.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable JSON on stdout; errors as JSON on stderr.",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=ENV_STORE,
    metavar="PATH",
    help=STORE_HELP,
)
@click.option(
    "--lang",
    metavar="LANG",
    expose_value=False,
    is_eager=True,
    callback=language.lang_callback,
    help=language.LANG_HELP,
)
@click.option(
    "--log-level",
    type=click.Choice(list(sslog.LEVELS)),
    default="warning",
    show_default=True,
    help="Log detail on stderr; 'trace' adds every APDU in hex "
    "(PINs, keys and cryptograms redacted).",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _show_version(ctx) if value else None,
    help="Show the version and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context, reader: str | None, as_json: bool, store: Path | None, log_level: str
) -> None:
    """sscard: social security card middleware for issuance staff and service points.

    \b
    Examples:
      sscard readers                      list readers and cards
      sscard -r "Virtual PCD 00 00" apdu 00A4040007A0000000031010
      sscard --json readers               the same as JSON
      sscard --store /srv/sp/sscard.db audit verify   another local store
    """
    # The one place the local store is resolved: every command of this run uses it.
    ctx.obj = CliState(
        reader=reader, json=as_json, log_level=log_level, store=store or default_store()
    )
    sslog.configure(log_level)


def _show_version(ctx: click.Context) -> None:
    """``--version``: Click's wording, in the run's language."""
    click.echo(_("%(prog)s, version %(version)s") % {"prog": "sscard", "version": __version__})
    ctx.exit()


def _national_message(code: int) -> str | None:
    """The national interface's text for ``code`` in the active language (None: unnamed)."""
    from sscard.national import NationalCode

    try:
        named = NationalCode(code)
    except ValueError:
        return None
    return named.message


def _register() -> None:
    """Attach the sub-commands (one module each under sscard/cli/).

    One line per command: ``(module, attribute)``; keep the list sorted.
    """
    import importlib

    for module, attribute in (
        ("agent_cmd", "agent"),
        ("apdu_cmd", "apdu"),
        ("audit_cmd", "audit_group"),
        ("block_cmd", "block"),
        ("block_cmd", "unblock"),
        ("backup_cmd", "backup_group"),
        ("card_cmd", "info"),
        ("card_cmd", "read"),
        ("holder_cmd", "holder"),
        ("issue_cmd", "issue"),
        ("keys_cmd", "keys"),
        ("pin_cmd", "kiosk"),
        ("pin_cmd", "pin"),
        ("operator_cmd", "operator"),
        ("platform_cmd", "platform_group"),
        ("profile_cmd", "profile"),
        ("psam_cmd", "psam"),
        ("readers_cmd", "readers"),
        ("sync_cmd", "sync_group"),
        ("virtual_cmd", "virtual"),
    ):
        cli.add_command(getattr(importlib.import_module(f"sscard.cli.{module}"), attribute))
    add_json_options(cli)  # `sscard read --json` as well as `sscard --json read`


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="sscard")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo(_("Interrupted."), err=True)
        sys.exit(int(ExitCode.FAILED))
