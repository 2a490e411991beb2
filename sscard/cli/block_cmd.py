"""``sscard block`` and ``sscard unblock``: stop a lost card being used, or lift a block."""

from __future__ import annotations

import click

from sscard import blocking
from sscard.cli.auth import operator, require_operator
from sscard.cli.connect import service_point_option, staff_card
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options
from sscard.i18n import _
from sscard.layout import escape_controls


@click.command()
@click.option(
    "--level",
    type=click.Choice(blocking.LEVELS),
    default="app",
    show_default=True,
    help="app: temporary application block (can be lifted); app-permanent; "
    "card: the whole card, for good (every command then fails).",
)
@click.option(
    "--reason",
    type=click.Choice(blocking.REASONS),
    required=True,
    help="Why: reported to the exchange platform.",
)
@keystore_options
@service_point_option
@require_operator("card.block", record=False)
@pass_state
def block(
    state: CliState,
    level: str,
    reason: str,
    keystore: str | None,
    passphrase_fd: int | None,
    service_point: str,
) -> None:
    """Block the card in the reader (service staff), e.g. one reported lost.

    The command is MACed with the card's line-protection key from the key
    store. The block is audited and a card.blocked event goes to the exchange
    platform. 'app' can be undone with 'sscard unblock'; 'app-permanent' and
    'card' cannot.

    \b
    Example:
      sscard -r "ACS ACR39U" block --reason lost --keystore sp.ks
    """
    with staff_card(state, keystore, passphrase_fd) as (card, conn):
        result = blocking.block(
            card,
            level=level,
            reason=reason,
            conn=conn,
            operator=operator(),
            service_point=service_point,
        )
    state.emit(
        result,
        _("Card {card} blocked ({level}, {reason}); lifecycle now {lifecycle}.").format(
            card=escape_controls(result["card_number"]),
            level=level,
            reason=reason,
            lifecycle=result["lifecycle"],
        ),
    )


@click.command()
@keystore_options
@service_point_option
@require_operator("card.unblock", record=False)
@pass_state
def unblock(
    state: CliState, keystore: str | None, passphrase_fd: int | None, service_point: str
) -> None:
    """Lift a temporary application block (service staff). Audited and reported.

    \b
    Example:
      sscard -r "ACS ACR39U" unblock --keystore sp.ks
    """
    with staff_card(state, keystore, passphrase_fd) as (card, conn):
        result = blocking.unblock(card, conn=conn, operator=operator(), service_point=service_point)
    state.emit(
        result,
        _("Card {card} unblocked; lifecycle now {lifecycle}.").format(
            card=escape_controls(result["card_number"]), lifecycle=result["lifecycle"]
        ),
    )
