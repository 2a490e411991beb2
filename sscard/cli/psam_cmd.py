"""``sscard psam issue | info``: the PSAMs of the service points (docs/keys.md, "PSAM")."""

from __future__ import annotations

import click

from sscard.cli.auth import note, require_operator
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options, security_module
from sscard.cli.options import profile_option
from sscard.i18n import N_, _, columns, ljust
from sscard.keys.psam_scheme import KINDS
from sscard.layout import load_profile
from sscard.transport.resolve import open_transport


@click.group()
def psam() -> None:
    """The PSAM of a service point: issue one at the centre, show what one holds, withdraw it.

    A PSAM holds the city-level keys a service point needs and computes every
    cryptogram and MAC itself; the service point names it as its key store
    with --keystore psam:READER (or $SSCARD_KEYSTORE).

    \b
    Examples:
      sscard psam issue "Virtual PCD 00 01" --keystore centre.ks --kind service \\
          --city 310100 --terminal 310100000001
      sscard psam info virtual:psam.img
    """


@psam.command()
@click.argument("reader", metavar="PSAM_READER")
@keystore_options
@profile_option(N_("whose key scheme the PSAM serves (national-3: SM4, national-2: 3DES)"))
@click.option(
    "--kind",
    type=click.Choice(sorted(KINDS)),
    required=True,
    help="What the service point does: service (a counter: PIN reset / unblock, block, "
    "holder update, reads), kiosk (reads), department:DF0n (reads and that DF).",
)
@click.option("--city", required=True, metavar="CITY6", help="The city whose keys it gets.")
@click.option(
    "--terminal",
    required=True,
    metavar="DIGITS12",
    help="Its terminal number (终端机编号): 12 digits, starting with the city.",
)
@pass_state
@require_operator("psam.issue")
def issue(
    state: CliState,
    reader: str,
    keystore: str | None,
    passphrase_fd: int | None,
    profile: str,
    kind: str,
    city: str,
    terminal: str,
) -> None:
    """Issue the blank PSAM in PSAM_READER with the centre's keys (issuer role; audited).

    The PSAM's transport key is the centre's transport root diversified by the
    PSAM serial (as for a blank card). Each key goes in enciphered and MACed
    under it; only KCVs are shown and audited. A PSAM gets city-level keys,
    never a root.
    """
    from sscard.issuance.psam import check_terminal_number, issue_psam

    check_terminal_number(terminal, city)  # before any key store or PSAM is touched
    card_profile = load_profile(profile)
    module = security_module(keystore, passphrase_fd, card_profile)
    transport = open_transport(reader)
    try:
        done = issue_psam(transport, module, card_profile, kind=kind, city=city, terminal=terminal)
    finally:
        transport.disconnect()
    data = done.to_json()
    kcvs = ", ".join(f"{k.ref} v{k.version} KCV {k.kcv.hex().upper()}" for k in done.keys)
    note(psam_serial=data["psam_serial"], terminal=terminal, kind=kind, city=city, keys=kcvs)
    lines = [
        _("PSAM {serial} issued: {kind}, city {city}, terminal {terminal}").format(
            serial=data["psam_serial"], kind=kind, city=city, terminal=terminal
        ),
        *(_key_line(k.ref, k.version, k.kcv) for k in done.keys),
    ]
    state.emit(data, "\n".join(lines))


@psam.command()
@click.argument("reader", metavar="PSAM_READER")
@keystore_options
@profile_option(N_("whose transport key slot (MF/TK/00) the PSAM was keyed with"))
@pass_state
@require_operator("psam.withdraw")
def withdraw(
    state: CliState, reader: str, keystore: str | None, passphrase_fd: int | None, profile: str
) -> None:
    """Withdraw the PSAM in PSAM_READER from service: delete every key it holds.

    Issuer role; audited with the deleted keys' KCVs. The PSAM's transport key
    opens its issuance session, as for 'psam issue'; the terminal number stays
    so the audit trail still names it. To rotate keys instead, issue the PSAM
    again from a key store that holds the new versions.
    """
    from sscard.issuance.psam import withdraw_psam

    card_profile = load_profile(profile)
    module = security_module(keystore, passphrase_fd, card_profile)
    transport = open_transport(reader)
    try:
        done = withdraw_psam(transport, module, card_profile)
    finally:
        transport.disconnect()
    data = done.to_json()
    kcvs = ", ".join(f"{k.ref} v{k.version} KCV {k.kcv.hex().upper()}" for k in done.keys)
    note(psam_serial=data["psam_serial"], terminal=done.terminal_number, keys=kcvs)
    lines = [
        _("PSAM {serial} (terminal {terminal}) withdrawn: {count} key(s) deleted").format(
            serial=data["psam_serial"], terminal=done.terminal_number, count=len(done.keys)
        ),
        *(_key_line(k.ref, k.version, k.kcv) for k in done.keys),
    ]
    state.emit(data, "\n".join(lines))


@psam.command()
@click.argument("reader", metavar="PSAM_READER")
@pass_state
def info(state: CliState, reader: str) -> None:
    """Show a PSAM: serial, terminal number, keys (version, algorithm, KCV, tries left)."""
    from sscard.keys.psam_module import open_psam

    held = open_psam(reader)
    held.transport.disconnect()
    data = {
        "psam_serial": held.serial.hex().upper(),
        "terminal_number": held.terminal_number,
        "city": held.city,
        "keys": [k.to_json() for k in held.keys],
    }
    labels = [_("PSAM"), _("terminal"), _("city")]
    width = max(columns(label) for label in labels) + 2
    lines = [
        ljust(labels[0], width) + held.serial.hex().upper(),
        ljust(labels[1], width) + str(held.terminal_number),
        ljust(labels[2], width) + (held.city or _("(not issued)")),
        *(
            f"  {k.ref:<12} v{k.version:<3} {k.algorithm:<4} "
            + _("KCV {kcv} tries {left}/{limit}").format(
                kcv=k.kcv.hex().upper(), left=k.tries_left, limit=k.error_limit
            )
            for k in held.keys
        ),
    ]
    state.emit(data, "\n".join(lines))


def _key_line(ref: str, version: int, kcv: bytes) -> str:
    """One key of a PSAM: reference, version and KCV."""
    return f"  {ref:<12} v{version:<3} " + _("KCV {kcv}").format(kcv=kcv.hex().upper())
