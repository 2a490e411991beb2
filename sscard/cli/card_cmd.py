"""``sscard read`` and ``sscard info``: what is on the card in the reader."""

from __future__ import annotations

from typing import Any

import click

from sscard import errors
from sscard.card import SocialSecurityCard
from sscard.cli.auth import note, require_operator
from sscard.cli.connect import connected_transport
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options, security_module
from sscard.i18n import N_, _, columns, ljust
from sscard.layout import decode_records, escape_controls

_LABELS = {  # translated where shown: _(label)
    "card_number": N_("card number"),
    "ssn": N_("social security number"),
    "name": N_("name"),
    "name_ext": N_("name extension"),
    "gender": N_("gender"),
    "ethnicity": N_("ethnicity"),
    "birthplace": N_("birthplace"),
    "birth_date": N_("birth date"),
    "issue_date": N_("issue date"),
    "expiry_date": N_("expiry date"),
    "region": N_("region"),
    "issuer_org": N_("issuing institution"),
}


def _block_list_warning(state: CliState, card_number: str) -> str | None:
    """A warning when the exchange platform put this card on the block list."""
    from sscard.exchange import inbox

    conn = state.open_store()
    try:
        inbox.ensure_schema(conn)
        entry = inbox.blocked(conn, card_number)
        updates = inbox.pending_updates(conn, card_number)
    finally:
        conn.close()
    if entry is None:
        if updates:
            return _(
                "Note: {count} holder-data update(s) from the exchange platform wait "
                "for this card: sscard holder update --keystore STORE"
            ).format(count=len(updates))
        return None
    return escape_controls(
        _(
            "Warning: card {card} is on the exchange platform's block list "
            "(reason: {reason}, since {since}); keep it and "
            "block it: sscard block --reason lost --keystore STORE"
        ).format(card=card_number, reason=entry.reason or _("not given"), since=entry.occurred_at)
    )


@click.command()
@keystore_options
@click.option(
    "--national",
    is_flag=True,
    help="Read only the basic information, as the national terminal interface does "
    "(iReadCardBas), and print its pipe-separated line (--json: the same fields by name).",
)
@require_operator("card.read")
@pass_state
def read(state: CliState, keystore: str | None, passphrase_fd: int | None, national: bool) -> None:
    """Read the card: EF05 and EF06 decoded, then the department files the keys open.

    Needs an operator allowed to read cards (issuer or service); every read
    is in the audit trail. A card on the exchange platform's block list is
    flagged. Without --keystore only the freely readable files are read (card
    identification and cardholder data). With a key store, sscard
    authenticates to each department DF whose key it holds and reads it too.
    `--json` output uses the issuance field names, so it can be fed back as
    holder input. Control characters read from the card (line breaks, C0/C1,
    bidi controls) are printed escaped (\\x1b, \\u202e), in JSON as \\u
    escapes.

    A 3.0 card (spec version 3.00) shows its basic information only after
    authentication with the read key RKSSSE, so it needs --keystore; a 2.0
    card reads freely. With a key store the card identification code's MAC
    is checked too (a forged code is the national error -20).

    --national prints the national read result: region, social security
    number, card number, card identification code, name, ATR, spec version,
    issue date, expiry date, terminal number, terminal device number, each
    followed by "|".

    \b
    Examples:
      sscard -r virtual:card.img read
      sscard --json read --keystore dev > holder.json
      sscard read --national --keystore centre.ks
    """
    with connected_transport(state) as transport:
        card = SocialSecurityCard.open(transport)
        if keystore is not None:
            card.security = security_module(keystore, passphrase_fd, card.profile)
        if national:
            basic = card.read_basic_info()
            note(card_serial=card.serial, card_number=basic.card_number)
            state.emit(basic.to_json(), escape_controls(basic.national()))
            return
        holder = card.read_holder()
        note(card_serial=card.serial, card_number=str(holder["card_number"]))
        departments: dict[str, Any] = {}
        skipped: list[str] = []
        for spec in card.profile.files:
            if spec.id in ("MF", "SSSE", "EF05", "EF06") or not spec.records:
                continue
            assert spec.parent is not None
            try:
                if card.security is not None:
                    card.external_authenticate(spec.parent)
                records = card.read_records(spec.id)
            except (
                errors.SecurityStatusNotSatisfied,
                errors.AuthenticationError,
                errors.UnknownKeyReference,  # e.g. a PSAM without this department's keys
            ):
                skipped.append(spec.parent)
                card.forget_selection()
                continue
            departments[spec.parent] = decode_records(card.profile, records, holder_only=False)
    warning = _block_list_warning(state, str(holder["card_number"]))
    if warning:
        click.echo(warning, err=True)
    if state.json:
        state.emit({**holder, **({"departments": departments} if departments else {})})
        return
    labels = {field: _(label) for field, label in _LABELS.items()}
    width = max(columns(label) for label in labels.values())
    click.echo(
        _("Card {serial} ({profile})").format(
            serial=card.serial.hex().upper(), profile=card.profile.name
        )
    )
    for field, label in labels.items():
        if field in holder:
            click.echo(f"  {ljust(label, width)}  {_shown(holder[field])}")
    for df, values in departments.items():
        click.echo(f"{df}:" if values else _("{df}: (no data written)").format(df=df))
        for key, value in values.items():
            click.echo(f"  {ljust(_shown(key), width)}  {_shown(value)}")
    if skipped:
        click.echo(
            _("Not read (needs the department's key): {dfs}").format(
                dfs=", ".join(sorted(set(skipped)))
            ),
            err=True,
        )


def _shown(value: Any) -> str:
    """A value read from the card, as a terminal may show it (control characters escaped)."""
    return escape_controls(str(value))


@click.command()
@pass_state
def info(state: CliState) -> None:
    """Show the card's ATR, serial, profile, lifecycle and PIN tries left.

    Reading the PIN counter does not spend a try.

    \b
    Example:
      sscard -r virtual:card.img info
    """
    with connected_transport(state) as transport:
        card = SocialSecurityCard.open(transport)
        facts = card.info()
    data = facts.to_json()
    tries = _("not set") if facts.pin_tries_left is None else str(facts.pin_tries_left)
    profile = data["profile"] or _("none yet (no social security application on the card)")
    serial = data["serial"] or _("unreadable (the card is blocked for good)")
    rows = [
        (_("ATR"), data["atr"]),
        (_("serial"), serial),
        (_("profile"), profile),
        (_("lifecycle"), data["lifecycle"]),
        (_("PIN tries"), tries),
    ]
    width = max(columns(label) for label, _value in rows)
    state.emit(data, "\n".join(f"{ljust(label, width)}  {value}" for label, value in rows))
