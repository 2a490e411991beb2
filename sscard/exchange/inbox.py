"""What the service point pulled from the platform: block list and holder updates (art. 10-11).

Tables prefixed ``inbox_`` in the local store. :func:`apply_pulled` stores a
page of pulled items and the new cursor in the caller's transaction, so a
crash neither skips nor repeats an item. The block list is last-writer-wins by
``occurred_at`` (``card.blocked`` vs ``card.unblocked``), so the order in which
events arrive does not matter. The service point consults :func:`blocked` when
a card appears and applies :func:`pending_updates`, then :func:`mark_applied`.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sscard import db
from sscard.db import Connection
from sscard.i18n import N_

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_block_list (
    card_number TEXT PRIMARY KEY,
    card_serial TEXT,
    blocked     INTEGER NOT NULL,
    reason      TEXT,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox_holder_updates (
    event_id    TEXT PRIMARY KEY,
    card_number TEXT NOT NULL,
    ssn         TEXT NOT NULL,
    changes     TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    applied_at  TEXT,
    outcome     TEXT
);
CREATE INDEX IF NOT EXISTS inbox_holder_updates_card
    ON inbox_holder_updates (card_number) WHERE applied_at IS NULL;
CREATE TABLE IF NOT EXISTS inbox_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


SCHEMA = db.register_schema(
    "inbox",
    [
        db.Migration(
            1, both=tuple(_SCHEMA.split(";")), note=N_("pulled block list and holder updates")
        )
    ],
)


def ensure_schema(conn: Connection) -> None:
    """Create the inbox tables when missing (idempotent)."""
    db.ensure_schema(conn, SCHEMA.name)


def cursor(conn: Connection) -> int:
    """The pull cursor: the platform seq of the last item stored (0 at first)."""
    row = conn.execute("SELECT value FROM inbox_state WHERE key = 'cursor'").fetchone()
    return 0 if row is None else int(row[0])


class Applied(NamedTuple):
    """What one page of pulled items changed."""

    blocked: int = 0
    unblocked: int = 0
    holder_updates: int = 0
    ignored: int = 0


def apply_pulled(conn: Connection, items: list[dict[str, Any]], new_cursor: int) -> Applied:
    """Store pulled items and the new cursor (no commit: wrap in a transaction)."""
    from sscard.exchange.events import utc_text  # the event model loads for a pull only

    now = utc_text()
    counts = {"blocked": 0, "unblocked": 0, "holder_updates": 0, "ignored": 0}
    for item in items:
        event = item["event"]
        category, p, at = event["category"], event["payload"], event["occurred_at"]
        if category in ("card.blocked", "card.unblocked"):
            is_block = category == "card.blocked"
            conn.execute(
                "INSERT INTO inbox_block_list (card_number, card_serial, blocked, reason, event_id,"
                " occurred_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (card_number) DO UPDATE SET card_serial = coalesce("
                "excluded.card_serial, inbox_block_list.card_serial), blocked = excluded.blocked,"
                " reason = excluded.reason, event_id = excluded.event_id,"
                " occurred_at = excluded.occurred_at, received_at = excluded.received_at"
                " WHERE excluded.occurred_at >= inbox_block_list.occurred_at",
                (
                    p["card_number"],
                    p.get("card_serial"),
                    int(is_block),
                    p.get("reason"),
                    event["id"],
                    at,
                    now,
                ),
            )
            counts["blocked" if is_block else "unblocked"] += 1
        elif category == "holder.changed":
            if p["written_to_card"]:
                conn.execute(
                    "UPDATE inbox_holder_updates SET applied_at = ?, outcome = ?"
                    " WHERE card_number = ? AND applied_at IS NULL AND occurred_at <= ?",
                    (now, f"superseded by {event['id']}", p["card_number"], at),
                )
            else:
                conn.execute(
                    "INSERT INTO inbox_holder_updates (event_id, card_number, ssn, changes,"
                    " occurred_at, received_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (
                        event["id"],
                        p["card_number"],
                        p["ssn"],
                        json.dumps(p["changes"], ensure_ascii=False),
                        at,
                        now,
                    ),
                )
                counts["holder_updates"] += 1
        else:
            counts["ignored"] += 1
    conn.execute(
        "INSERT INTO inbox_state (key, value) VALUES ('cursor', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(new_cursor),),
    )
    return Applied(**counts)


class BlockEntry(NamedTuple):
    """A card to block when it next appears."""

    card_number: str
    card_serial: str | None
    reason: str | None
    event_id: str
    occurred_at: str


def blocked(conn: Connection, card_number: str) -> BlockEntry | None:
    """The block-list entry for this card, or None when it may be used."""
    row = conn.execute(
        "SELECT card_number, card_serial, reason, event_id, occurred_at FROM inbox_block_list"
        " WHERE card_number = ? AND blocked = 1",
        (card_number,),
    ).fetchone()
    return None if row is None else BlockEntry(*row)


def block_list(conn: Connection) -> list[BlockEntry]:
    """Every card currently on the block list."""
    rows = conn.execute(
        "SELECT card_number, card_serial, reason, event_id, occurred_at FROM inbox_block_list"
        " WHERE blocked = 1 ORDER BY occurred_at"
    ).fetchall()
    return [BlockEntry(*r) for r in rows]


class HolderUpdate(NamedTuple):
    """Holder data to write onto the card at its next visit."""

    event_id: str
    card_number: str
    ssn: str
    changes: dict[str, Any]
    occurred_at: str


def pending_updates(conn: Connection, card_number: str | None = None) -> list[HolderUpdate]:
    """Unapplied holder updates (of one card), oldest first."""
    sql = (
        "SELECT event_id, card_number, ssn, changes, occurred_at FROM inbox_holder_updates"
        " WHERE applied_at IS NULL"
    )
    args: tuple[str, ...] = ()
    if card_number is not None:
        sql += " AND card_number = ?"
        args = (card_number,)
    rows = conn.execute(sql + " ORDER BY occurred_at", args).fetchall()
    return [HolderUpdate(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]


def mark_applied(conn: Connection, event_id: str, outcome: str = "written") -> bool:
    """Record that an update was written to the card; False when unknown or already applied."""
    from sscard.exchange.events import utc_text

    cur = conn.execute(
        "UPDATE inbox_holder_updates SET applied_at = ?, outcome = ?"
        " WHERE event_id = ? AND applied_at IS NULL",
        (utc_text(), outcome, event_id),
    )
    return cur.rowcount == 1
