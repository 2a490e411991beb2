"""Opening the card named by the global ``--reader`` option, for commands that talk to one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from sscard.card import SocialSecurityCard
from sscard.cli.context import CliState
from sscard.db import Connection
from sscard.errors import SscardError
from sscard.i18n import N_
from sscard.protocol import ApduProtocol
from sscard.transport.base import Transport
from sscard.transport.resolve import open_transport


@contextmanager
def connected_transport(state: CliState, *, shared: bool = False) -> Iterator[Transport]:
    """Resolve ``--reader``, connect, and disconnect afterwards whatever happens."""
    transport = open_transport(state.reader, shared=shared)
    transport.connect()
    try:
        yield transport
    finally:
        transport.disconnect()


@contextmanager
def connected_protocol(state: CliState, *, shared: bool = False) -> Iterator[ApduProtocol]:
    """Like :func:`connected_transport`, wrapped in the transmit pipeline."""
    with connected_transport(state, shared=shared) as transport:
        yield ApduProtocol(transport)


@contextmanager
def staff_card(
    state: CliState, keystore: str | None, passphrase_fd: int | None
) -> Iterator[tuple[SocialSecurityCard, Connection]]:
    """The card in the reader with the keys of ``keystore``, and the local store (``--store``).

    For staff actions that change a card and record it (PIN reset, blocking,
    holder updates); the link and the store are closed afterwards.
    """
    from sscard.cli.auth import audit_failure, note
    from sscard.cli.keystore import security_module

    with connected_transport(state) as transport:
        card = SocialSecurityCard.open(transport)
        try:
            card.security = security_module(keystore, passphrase_fd, card.profile)
        except SscardError as exc:  # no PSAM, a wrong store: audited, the card untouched
            note(card_serial=card.serial.hex().upper())
            audit_failure(exc)
            raise
        conn = state.open_store()
        try:
            yield card, conn
        finally:
            conn.close()


def default_service_point() -> str:
    """``$SSCARD_SERVICE_POINT``, else this host's name (as an exchange-platform id)."""
    import socket

    name = os.environ.get("SSCARD_SERVICE_POINT") or socket.gethostname().split(".")[0]
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:64]
    return cleaned or "service-point"


service_point_option = click.option(
    "--service-point",
    default=default_service_point,
    show_default=N_("host name"),
    help="This service point's id on the exchange platform ($SSCARD_SERVICE_POINT).",
)
