"""Entry point of the ``sscard`` command: global options, sub-commands, error mapping.

The command starts at once (issue 19): a sub-command's module is imported only
when that command runs or shows its help (:class:`SscardGroup` is Click's lazy
group), ``sscard --help`` lists the commands from :data:`COMMANDS` without
importing any, and the emulator behind ``virtual:PATH`` / ``pinpad:PATH`` is
imported only when such a reader is opened. ``tests/test_startup.py`` keeps it so.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import click

from sscard import __version__, errors
from sscard.cli import language
from sscard.cli.context import STORE_HELP, CliState, give_json_option, refuse_store_password
from sscard.cli.entry import command_starts
from sscard.cli.exit_codes import ExitCode, error_kind, exit_code_for
from sscard.i18n import N_, _
from sscard.national import message_for
from sscard.paths import ENV_STORE, default_store
from sscard.transport.base import (
    PINPAD_PREFIX,
    VIRTUAL_PREFIX,
    CardLike,
    Transport,
    register_card_files,
    register_reader_form,
)

LOG_LEVELS = ("trace", "debug", "info", "warning", "error")
"""The names of ``sscard.log.LEVELS`` (kept here so --help does not load logging;
tests/test_startup.py checks they agree)."""


class Entry(NamedTuple):
    """Where a sub-command lives, and the line ``sscard --help`` shows for it."""

    target: str
    """``module:attribute`` under ``sscard.cli``."""
    short_help: str
    """The command's short help (its help's first sentence), marked for the catalog;
    ``tests/test_startup.py`` checks it against the command's own."""


COMMANDS: dict[str, Entry] = {
    "agent": Entry(
        "agent_cmd:agent",
        N_(
            "The local card service: business systems (Java, C#, a browser page) call the "
            "national interface (iReadCardBas, iVerifyPIN, iChangePIN, iReloadPIN) as JSON "
            "over HTTP and WebSocket on 127.0.0.1; kiosks run its page."
        ),
    ),
    "apdu": Entry(
        "apdu_cmd:apdu", N_("Send raw command APDUs to the card and print each response.")
    ),
    "audit": Entry(
        "audit_cmd:audit_group",
        N_("The audit trail: every operator action, hash-chained, with signed checkpoints."),
    ),
    "backup": Entry(
        "backup_cmd:backup_group",
        N_(
            "Encrypted backups: the local stores (issuance, outbox, operators, audit) "
            "and key stores."
        ),
    ),
    "block": Entry(
        "block_cmd:block",
        N_("Block the card in the reader (service staff), e.g. one reported lost."),
    ),
    "command-server": Entry(
        "cmdserver_cmd:command_server",
        N_("A resident process that runs sscard commands without start-up time."),
    ),
    "exchange-platform": Entry(
        "platform_cmd:platform_group",
        N_("The reference exchange platform: serve it, make test certificates, read its audit."),
    ),
    "holder": Entry(
        "holder_cmd:holder",
        N_(
            "Cardholder data: check files for issuance; write updates from the platform onto cards."
        ),
    ),
    "info": Entry(
        "card_cmd:info",
        N_("Show the card's ATR, serial, profile, lifecycle and PIN tries left."),
    ),
    "issue": Entry(
        "issue_cmd:issue",
        N_("Issue one card: personalize the blank card in the reader for a holder."),
    ),
    "keys": Entry(
        "keys_cmd:keys",
        N_("Key ceremony: key stores, root keys, dual control, zone export, rotation."),
    ),
    "kiosk": Entry(
        "pin_cmd:kiosk",
        N_(
            "A terminal PIN-change kiosk for one reader: insert, current PIN, new PIN "
            "twice, remove."
        ),
    ),
    "operator": Entry(
        "operator_cmd:operator",
        N_("Operators and roles: add, list, disable, passwd, login, logout, whoami."),
    ),
    "pin": Entry(
        "pin_cmd:pin",
        N_("The cardholder PIN: status, verify, change; staff reset and unblock."),
    ),
    "profile": Entry(
        "profile_cmd:profile",
        N_("Card profiles: the file tree, records, access rules, keys and PIN of a card."),
    ),
    "psam": Entry(
        "psam_cmd:psam",
        N_(
            "The PSAM of a service point: issue one at the centre, show what one holds, "
            "withdraw it."
        ),
    ),
    "read": Entry(
        "card_cmd:read",
        N_("Read the card: EF05 and EF06 decoded, then the department files the keys open."),
    ),
    "readers": Entry(
        "readers_cmd:readers",
        N_("List the PC/SC readers with card presence, ATR and PIN pad."),
    ),
    "store": Entry(
        "store_cmd:store_group",
        N_("The store: create a new one's tables, upgrade them, show versions and counts."),
    ),
    "sync": Entry(
        "sync_cmd:sync_group",
        N_(
            "Send card events to the city exchange platform; fetch the block list and "
            "holder updates."
        ),
    ),
    "unblock": Entry(
        "block_cmd:unblock", N_("Lift a temporary application block (service staff).")
    ),
    "virtual": Entry(
        "virtual_cmd:virtual",
        N_(
            "Emulated social security cards and PSAMs (files) and the bridge that puts "
            "them in PC/SC readers."
        ),
    ),
}
"""Every sub-command of ``sscard`` (one module each under sscard/cli/), sorted by name."""


def load_command(name: str) -> click.Command:
    """Import the module of the sub-command ``name`` (a key of :data:`COMMANDS`) and return it."""
    module, _sep, attribute = COMMANDS[name].target.partition(":")
    command: click.Command = getattr(importlib.import_module(f"sscard.cli.{module}"), attribute)
    return command


class SscardGroup(click.Group):
    """A group that turns library errors into one message and a stable exit code.

    It also sets the run's language before Click parses the arguments, and
    shows every help text in it (:mod:`sscard.cli.language`). Sub-commands are
    loaded when first asked for (:data:`COMMANDS`; Click's lazy group): each
    gets its ``--json`` flag and its help in the run's language then.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = load_command(cmd_name)
            give_json_option(command)
            language.localize(command)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from :data:`COMMANDS` (no command is imported)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            if name in COMMANDS:
                line = click.Command(name, help=_(COMMANDS[name].short_help))
                rows.append((name, line.get_short_help_str(limit)))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)

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
            national = message_for(int(exc.national_code))
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
    envvar=ENV_STORE,
    metavar="PATH|URL",
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
    type=click.Choice(LOG_LEVELS),
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
    ctx: click.Context, reader: str | None, as_json: bool, store: str | None, log_level: str
) -> None:
    """sscard: social security card middleware for issuance staff and service points.

    \b
    Examples:
      sscard readers                      list readers and cards
      sscard -r "Virtual PCD 00 00" apdu 00A4040007A0000000031010
      sscard --json readers               the same as JSON
      sscard --store /srv/sp/sscard.db audit verify   another local store
      sscard --store postgresql://sscard@db.centre.example/sscard store status
    """
    command_starts()  # the collector runs again, for the command's own objects
    # The one place the local store is resolved: every command of this run uses it.
    ctx.obj = CliState(
        reader=reader, json=as_json, log_level=log_level, store=store or str(default_store())
    )
    if store:
        refuse_store_password(store)
    from sscard import log  # logging loads for a command that runs, not for --help

    log.configure(log_level)


def _show_version(ctx: click.Context) -> None:
    """``--version``: Click's wording, in the run's language."""
    click.echo(_("%(prog)s, version %(version)s") % {"prog": "sscard", "version": __version__})
    ctx.exit()


def _emulated_card(path: str) -> CardLike:
    """``virtual:PATH``: the emulator (sscard.applets) is imported only now."""
    from sscard.applets import load_card

    return load_card(path)


def _emulated_pin_pad(path: str) -> Transport:
    """``pinpad:PATH``: the emulated card behind an emulated PIN pad, imported only now."""
    from sscard.applets import open_pin_pad

    return open_pin_pad(path)


register_card_files(VIRTUAL_PREFIX, _emulated_card)
register_reader_form(PINPAD_PREFIX, _emulated_pin_pad)


def main() -> None:
    """Run the command line (:func:`sscard.cli.entry.main` is the console script)."""
    try:
        cli.main(prog_name="sscard")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo(_("Interrupted."), err=True)
        sys.exit(int(ExitCode.FAILED))
