"""Staff actions on a card, recorded: audit record and exchange event in one transaction.

PIN reset/unblock and card block/unblock (regulation art. 11, 14) all go the
same way: read who the card belongs to, do the action, then (after the card
said yes) commit the audit record and the event for the exchange platform
together; a failure is audited with its error class. Never a PIN or a key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sscard import audit
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard
from sscard.db import transaction
from sscard.exchange import outbox


def recorded(
    card: SocialSecurityCard,
    action: str,
    do: Callable[[], None],
    *,
    conn: sqlite3.Connection,
    operator: Actor | None,
    service_point: str,
    category: str,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``do`` (the card commands of ``action``) and record it; serial, number, event id.

    The ``category`` event carries card serial, card number, holder SSN and ``payload``.
    """
    holder = card.read_holder()
    serial, number = card.serial.hex().upper(), str(holder["card_number"])
    audit.ensure_schema(conn)
    outbox.ensure_schema(conn)
    try:
        do()
    except BaseException as exc:
        audit.record(
            action,
            operator=operator,
            outcome="failed",
            error=exc,
            card_serial=serial,
            card_number=number,
            conn=conn,
        )
        raise
    body = {"card_serial": serial, "card_number": number, "ssn": holder["ssn"], **(payload or {})}
    with transaction(conn):
        event = outbox.enqueue(conn, category, body, service_point=service_point)
        audit.record(
            action,
            operator=operator,
            outcome="ok",
            card_serial=serial,
            card_number=number,
            conn=conn,
        )
    return {"card_serial": serial, "card_number": number, "event": event}
