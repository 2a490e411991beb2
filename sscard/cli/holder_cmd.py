"""``sscard holder``: check cardholder data files before issuance (docs/layout.md)."""

from __future__ import annotations

from pathlib import Path

import click

from sscard.cli.auth import require_operator
from sscard.cli.connect import service_point_option, staff_card
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options
from sscard.cli.options import profile_option
from sscard.i18n import N_, _
from sscard.layout import load_profile, read_holders, validate_rows


@click.group()
def holder() -> None:
    """Cardholder data: check files for issuance; write updates from the platform onto cards."""


@holder.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@profile_option(N_("whose record sizes apply"), dest="profile_name")
@pass_state
def validate(state: CliState, file: Path, profile_name: str | None) -> None:
    """Check every row of a holder FILE without touching a card.

    All problems of all rows are listed together (line and field); exit code 7.

    \b
    Examples:
      sscard holder validate batch.csv
      sscard --json holder validate batch.jsonl --profile national-2
    """
    profile = load_profile(profile_name)
    rows = read_holders(file)
    validate_rows(rows, profile)
    state.emit(
        {"valid": True, "file": str(file), "rows": len(rows)},
        _("{file}: {rows} row(s) valid").format(file=file, rows=len(rows)),
    )


@holder.command()
@keystore_options
@service_point_option
@require_operator("holder.update", record=False)
@pass_state
def update(
    state: CliState, keystore: str | None, passphrase_fd: int | None, service_point: str
) -> None:
    """Write the holder-data updates pulled from the exchange platform onto the card.

    Run 'sscard sync pull' first. Only the changed records are rewritten (after
    external authentication with the card's key from the key store), read back,
    then marked applied, audited and reported (holder.changed). Service role.

    \b
    Example:
      sscard -r "ACS ACR39U" holder update --keystore sp.ks
    """
    from sscard import holder_update
    from sscard.cli.auth import operator

    with staff_card(state, keystore, passphrase_fd) as (card, conn):
        done = holder_update.apply_pending(
            card, conn=conn, operator=operator(), service_point=service_point
        )
    if not done:
        state.emit({"applied": []}, _("No pending holder-data update for this card."))
        return
    lines = [
        _("Applied update {update}: {fields} ({records} record(s))").format(
            update=d["update"], fields=", ".join(d["fields"]), records=d["records"]
        )
        for d in done
    ]
    state.emit({"applied": done}, "\n".join(lines))
