"""``sscard readers``: the readers present, whether a card is in each, its ATR, a PIN pad."""

from __future__ import annotations

import logging

import click

from sscard.cli.context import CliState, pass_state
from sscard.errors import NoService, SscardError
from sscard.i18n import _
from sscard.transport import pcsc
from sscard.transport.base import Transport
from sscard.transport.part10 import has_pin_pad, reader_features
from sscard.transport.resolve import VIRTUAL_PREFIX, open_transport, reader_spec

log = logging.getLogger(__name__)


def _pin_pad(transport: Transport) -> bool | None:
    """Whether the reader has a PIN pad (PC/SC part 10 feature request); None: could not ask."""
    try:
        transport.connect()
        try:
            return has_pin_pad(reader_features(transport))
        finally:
            transport.disconnect()
    except SscardError as exc:
        log.debug("%s: no answer to the feature request: %s", transport.name, exc)
        return None


@click.command()
@pass_state
def readers(state: CliState) -> None:
    """List the PC/SC readers with card presence, ATR and PIN pad.

    When --reader (or SSCARD_READER) names an emulated card ('virtual:PATH'),
    it is listed too. A reader holding a card is asked for its PC/SC part 10
    features: 'PIN pad' when it verifies PINs typed on its own keypad
    (--json: "pin_pad" true, false, or null when it could not be asked:
    no card, or in use by another application).

    \b
    Examples:
      sscard readers
      sscard --json readers
    """
    rows: list[dict[str, object]] = []
    spec = reader_spec(state.reader)
    if spec is not None and spec.startswith(VIRTUAL_PREFIX):
        transport = open_transport(spec)
        transport.connect()
        try:
            atr = transport.atr
        finally:
            transport.disconnect()
        rows.append(
            {
                "name": spec,
                "card_present": True,
                "atr": atr.hex().upper(),
                "kind": "virtual",
                "pin_pad": _pin_pad(transport),
            }
        )
    try:
        states = pcsc.reader_states()
    except NoService as exc:
        if not rows:
            raise
        states = []  # the emulated card is listed; say why PC/SC readers are not
        click.echo(_("Warning: {error}").format(error=exc), err=True)
    for st in states:
        # Ask only a reader holding a card that no one holds exclusively (shared
        # access: a session in progress elsewhere is not disturbed).
        ask = st.card_present and not st.in_use_exclusively
        rows.append(
            {
                "name": st.name,
                "card_present": st.card_present,
                "atr": st.atr.hex().upper() if st.atr else None,
                "kind": "pcsc",
                "pin_pad": _pin_pad(pcsc.PcscTransport(st.name, shared=True)) if ask else None,
            }
        )
    if state.json:
        state.emit(rows)
        return
    if not rows:
        click.echo(_("No reader found. Connect a reader (or start an emulated card) and retry."))
        return
    width = max(len(str(r["name"])) for r in rows)
    for r in rows:
        card = _("card  {atr}").format(atr=r["atr"]) if r["card_present"] else _("empty")
        pad = "  " + _("PIN pad") if r["pin_pad"] else ""
        click.echo(f"{r['name']!s:<{width}}  {card}{pad}")
