"""Recording what staff did to a card: audit record and exchange event, in one transaction.

Used by PIN reset/unblock and card blocking (regulation art. 11, 14): after the
card said yes, the audit record and the event for the exchange platform commit
together; a failure is audited with its error class. Never a PIN or a key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from sscard import audit
from sscard.audit.log import Actor
from sscard.db import transaction
from sscard.exchange import outbox


def ensure_schema(conn: sqlite3.Connection) -> None:
    """The audit and outbox tables."""
    audit.ensure_schema(conn)
    outbox.ensure_schema(conn)


def record_failure(
    conn: sqlite3.Connection,
    action: str,
    error: BaseException,
    *,
    operator: Actor | None,
    serial: str,
    number: str,
) -> None:
    """Audit a failed staff action (the error's class, never its text)."""
    audit.record(
        action,
        operator=operator,
        outcome="failed",
        error=error,
        card_serial=serial,
        card_number=number,
        conn=conn,
    )


def record_success(
    conn: sqlite3.Connection,
    action: str,
    *,
    operator: Actor | None,
    serial: str,
    number: str,
    category: str,
    payload: Mapping[str, Any],
    service_point: str,
) -> str:
    """Audit record and exchange event of a successful staff action; the event id."""
    with transaction(conn):
        event = outbox.enqueue(conn, category, payload, service_point=service_point)
        audit.record(
            action,
            operator=operator,
            outcome="ok",
            card_serial=serial,
            card_number=number,
            conn=conn,
        )
    return event
