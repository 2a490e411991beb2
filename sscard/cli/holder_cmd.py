"""``sscard holder``: check cardholder data files before issuance (docs/layout.md)."""

from __future__ import annotations

from pathlib import Path

import click

from sscard.cli.context import CliState, pass_state
from sscard.layout import load_profile, read_holders, validate_rows


@click.group()
def holder() -> None:
    """Cardholder data for issuance (CSV, JSON Lines or JSON; fields as in docs/layout.md)."""


@holder.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--profile",
    "profile_name",
    default=None,
    metavar="NAME|FILE",
    help="Card profile whose record sizes apply (default: ss3-sm4).",
)
@pass_state
def validate(state: CliState, file: Path, profile_name: str | None) -> None:
    """Check every row of a holder FILE without touching a card.

    All problems of all rows are listed together (line and field); exit code 7.

    \b
    Examples:
      sscard holder validate batch.csv
      sscard --json holder validate batch.jsonl --profile ss2-3des
    """
    profile = load_profile(profile_name)
    rows = read_holders(file)
    validate_rows(rows, profile)
    state.emit(
        {"valid": True, "file": str(file), "rows": len(rows)},
        f"{file}: {len(rows)} row(s) valid",
    )
