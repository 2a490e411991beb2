"""``sscard readers``: the readers present, whether a card is in each, and its ATR."""

from __future__ import annotations

import click

from sscard.cli.context import CliState, pass_state
from sscard.errors import NoService
from sscard.transport import pcsc
from sscard.transport.resolve import VIRTUAL_PREFIX, open_transport, reader_spec


@click.command()
@pass_state
def readers(state: CliState) -> None:
    """List the PC/SC readers with card presence and ATR.

    When --reader (or SSCARD_READER) names an emulated card ('virtual:PATH'),
    it is listed too.

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
            {"name": spec, "card_present": True, "atr": atr.hex().upper(), "kind": "virtual"}
        )
    try:
        states = pcsc.reader_states()
    except NoService as exc:
        if not rows:
            raise
        states = []  # the emulated card is listed; say why PC/SC readers are not
        click.echo(f"Warning: {exc}", err=True)
    for st in states:
        rows.append(
            {
                "name": st.name,
                "card_present": st.card_present,
                "atr": st.atr.hex().upper() if st.atr else None,
                "kind": "pcsc",
            }
        )
    if state.json:
        state.emit(rows)
        return
    if not rows:
        click.echo("No reader found. Connect a reader (or start an emulated card) and retry.")
        return
    width = max(len(str(r["name"])) for r in rows)
    for r in rows:
        card = f"card  {r['atr']}" if r["card_present"] else "empty"
        click.echo(f"{r['name']!s:<{width}}  {card}")
