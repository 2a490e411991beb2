"""Card actions, recorded: audit record and exchange events in one transaction.

Every action that changes a card goes the same way (regulation art. 11, 14):
do the card commands; if they fail, audit the failure (its error class);
once the card said yes, commit the action's own writes (issuance rows, an
inbox entry marked applied), its events for the exchange platform and its
audit record together. :func:`recorded_action` is that one way; issuance,
holder updates and the staff actions (PIN reset/unblock, block/unblock, via
:func:`recorded`) all use it. Never a PIN or a key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sscard import audit
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard
from sscard.db import Connection, StoreBusy, StoreUnavailable, transaction
from sscard.errors import SscardError
from sscard.exchange import outbox

Event = tuple[str, Mapping[str, Any]]
"""An exchange event to enqueue: ``(category, payload)``."""


def recorded_action(
    action: str,
    do: Callable[[], None],
    *,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
    card_serial: str,
    card_number: str,
    events: Iterable[Event] = (),
    writes: Callable[[Connection], object] | None = None,
    on_failure: Callable[[BaseException], object] | None = None,
    detail: Mapping[str, object] | None = None,
) -> list[str]:
    """Run ``do`` (the card commands of ``action``) and record it; the ids of the events.

    On failure: ``on_failure(exc)`` (extra writes, e.g. the issuance attempt)
    and a ``failed`` audit record, then the error goes on; the same when a rule
    of the store refuses the success record (one active card per holder). On success, in one
    transaction: ``writes(conn)``, every event of ``events`` and the ``ok``
    audit record (with ``detail``).
    """
    audit.ensure_schema(conn)
    outbox.ensure_schema(conn)

    def failed(exc: BaseException) -> None:
        if on_failure is not None:
            on_failure(exc)
        audit.record(
            action,
            operator=operator,
            outcome="failed",
            error=exc,
            card_serial=card_serial,
            card_number=card_number,
            conn=conn,
        )

    try:
        do()
    except BaseException as exc:
        failed(exc)
        raise
    try:
        with transaction(conn):
            if writes is not None:
                writes(conn)
            ids = [
                outbox.enqueue(conn, category, payload, service_point=service_point)
                for category, payload in events
            ]
            audit.record(
                action,
                operator=operator,
                outcome="ok",
                card_serial=card_serial,
                card_number=card_number,
                conn=conn,
                detail=detail,
            )
    except (StoreUnavailable, StoreBusy):
        raise  # the store cannot take a record now: nothing was recorded
    except SscardError as exc:  # one of the store's rules refused the record (nothing of it kept)
        failed(exc)
        raise
    return ids


def recorded(
    card: SocialSecurityCard,
    action: str,
    do: Callable[[], None],
    *,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
    category: str,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A staff action on an issued card (:func:`recorded_action`); serial, number, event id.

    The holder is read from the card first; the one ``category`` event carries
    card serial, card number, holder SSN and ``payload``.
    """
    serial = card.serial.hex().upper()
    try:
        holder = card.read_holder()  # a 3.0 card: the read key first (a PSAM may lack it)
    except BaseException as exc:
        audit.record(
            action, operator=operator, outcome="failed", error=exc, card_serial=serial, conn=conn
        )
        raise
    number = str(holder["card_number"])
    body = {"card_serial": serial, "card_number": number, "ssn": holder["ssn"], **(payload or {})}
    (event,) = recorded_action(
        action,
        do,
        conn=conn,
        operator=operator,
        service_point=service_point,
        card_serial=serial,
        card_number=number,
        events=[(category, body)],
    )
    return {"card_serial": serial, "card_number": number, "event": event}
