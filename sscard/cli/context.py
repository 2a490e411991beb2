"""State shared by every command: global options and the output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sscard.i18n import N_, _
from sscard.paths import default_store

if TYPE_CHECKING:
    from sscard.db import Connection


@dataclass
class CliState:
    """Global options of one ``sscard`` invocation."""

    reader: str | None = None
    json: bool = False
    log_level: str = "warning"
    store: str | Path | None = None
    """The store every command of this invocation reads and writes (``--store``): a
    path (SQLite) or a ``postgresql://`` URL."""

    def store_target(self) -> str:
        """The store: ``--store`` / ``$SSCARD_STORE``, else ``sscard.db`` in the data dir."""
        return str(self.store) if self.store is not None else str(default_store())

    def store_path(self) -> Path:
        """The SQLite file of the store (a PostgreSQL store has none: its URL as a path)."""
        return Path(self.store_target())

    def open_store(self) -> Connection:
        """Open the store of this invocation (:func:`sscard.db.open_store`)."""
        from sscard import db  # sqlite3 (or psycopg) loads for the commands that use the store

        return db.open_store(self.store_target())

    def emit(self, data: Any, human: str | None = None) -> None:
        """Print ``data`` as JSON with ``--json``, else the human text (default: ``str(data)``)."""
        if self.json:
            from sscard.layout.controls import escape_json_controls

            # escape_json_controls: bidi controls, C1 and line separators as \u escapes
            text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False)
            click.echo(escape_json_controls(text))
        else:
            click.echo(human if human is not None else str(data))

    def error(self, kind: str, message: str, code: int, **extra: Any) -> None:
        """Report an error on stderr (JSON with ``--json``); a ``hint`` gets its own line."""
        if self.json:
            from sscard.layout.controls import escape_json_controls

            payload = {"error": kind, "message": message, "exit_code": code, **extra}
            sys.stderr.write(escape_json_controls(json.dumps(payload, ensure_ascii=False)) + "\n")
        else:
            click.echo(_("Error: {message}").format(message=message), err=True)
            if extra.get("hint"):
                click.echo(_("hint: {hint}").format(hint=extra["hint"]), err=True)


def state() -> CliState:
    """The :class:`CliState` of the running command."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a command invoked on its own, e.g. in a test
        obj = ctx.ensure_object(CliState)
    return obj


pass_state = click.make_pass_decorator(CliState, ensure=True)

F = TypeVar("F", bound=Callable[..., Any])


def _set_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        refuse_store_password(value)
        ctx.ensure_object(CliState).store = value


STORE_HELP = N_(
    "The store (operators, audit trail, issuance, outbox): an SQLite file PATH (a service "
    "point, one station) or a centre's PostgreSQL database as postgresql://USER@HOST[:PORT]/DB "
    "(its password from ~/.pgpass, $PGPASSFILE or $PGPASSWORD, never in the URL). Default: "
    "$SSCARD_STORE, else sscard.db in the data directory ($SSCARD_DATA_DIR, else "
    "~/.local/share/sscard)."
)


def refuse_store_password(value: str) -> None:
    """Refuse a store URL that holds a password (``--store`` is in argv, which ``ps`` shows
    to every user; ``$SSCARD_STORE`` ends up in unit files and shell profiles).

    The password is never repeated: libpq reads it from ``~/.pgpass``,
    ``$PGPASSFILE`` or ``$PGPASSWORD`` (docs/store.md).
    """
    if "://" not in value:
        return  # a path: no URL, no password (and the store package stays unloaded)
    from sscard.db.target import parse_target
    from sscard.errors import InvalidInput

    try:
        if not parse_target(value).has_password:
            return
    except InvalidInput:
        return  # a URL sscard cannot use: opening the store says why
    raise InvalidInput(
        _("a password does not belong in the store setting"),
        [("--store / $SSCARD_STORE", _("the URL holds a password (command lines are public)"))],
    ).with_hint(
        _(
            "leave the password out of the URL: put it in ~/.pgpass (mode 0600) or the file "
            "$PGPASSFILE names, or in $PGPASSWORD (docs/store.md)"
        )
    )


def store_option(f: F) -> F:
    """``--store PATH`` on a command: the same as the global ``sscard --store PATH``.

    Kept where the command line documented it (``sscard issue --store``, ``sscard
    sync … --store``); it sets :attr:`CliState.store` before the operator check,
    so the check, its audit record and the command all use that store.
    """
    return click.option(
        "--store",
        metavar="PATH|URL",
        expose_value=False,
        is_eager=True,
        callback=_set_store,
        help="Same as the global 'sscard --store PATH|URL'.",
    )(f)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).json = True


_JSON_OPTION: dict[str, Any] = {
    "is_flag": True,
    "expose_value": False,
    "callback": _set_json,
    "help": "Machine-readable JSON on stdout (same as 'sscard --json').",
}


def _json_param() -> click.Option:
    return click.Option(["--json", "json_output"], **_JSON_OPTION)


def json_option(f: F) -> F:
    """A per-command ``--json`` flag, the same as the global ``sscard --json``."""
    return click.option("--json", "json_output", **_JSON_OPTION)(f)


def give_json_option(command: click.Command) -> None:
    """Give ``command`` and each one below it (sub-groups too) a ``--json`` flag if it has none.

    So ``sscard read --json`` works as well as ``sscard --json read``: both set
    :attr:`CliState.json`. sscard.cli.main calls it on each sub-command as it is
    loaded, which covers every command, present and future, without touching its module.
    """
    if not any("--json" in p.opts for p in command.params):
        command.params.append(_json_param())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            give_json_option(sub)
