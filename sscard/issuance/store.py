"""The local issuance store: which card was issued to whom, and how it went (issue 6).

Tables live in the one local SQLite file (``sscard.db``, docs/exchange.md)
beside the outbox and the audit trail, so that marking a card issued, its audit
record and its ``card.issued`` event commit in one transaction. Never a PIN or
a key: card serial, card number, holder SSN, profile, key versions, operator,
times and outcome.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sscard.db import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuance_cards (
    serial       TEXT PRIMARY KEY,
    card_number  TEXT NOT NULL,
    ssn          TEXT NOT NULL,
    profile      TEXT NOT NULL,
    key_versions TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('in_progress', 'issued', 'replaced')),
    operator     TEXT,
    started_at   TEXT NOT NULL,
    issued_at    TEXT,
    updated_at   TEXT NOT NULL,
    replaces     TEXT,
    batch_key    TEXT,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS issuance_cards_ssn ON issuance_cards (ssn, status);
CREATE INDEX IF NOT EXISTS issuance_cards_batch ON issuance_cards (batch_key);
CREATE TABLE IF NOT EXISTS issuance_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL,
    operator    TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT,
    error       TEXT
);
"""

STATUSES = ("in_progress", "issued", "replaced")


def now() -> str:
    """UTC time as ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the issuance tables when missing."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass(frozen=True)
class CardRecord:
    """One row of ``issuance_cards``."""

    serial: str
    card_number: str
    ssn: str
    profile: str
    key_versions: dict[str, int]
    status: str
    operator: str | None
    started_at: str
    issued_at: str | None
    updated_at: str
    replaces: str | None
    batch_key: str | None
    last_error: str | None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


_COLUMNS = (
    "serial, card_number, ssn, profile, key_versions, status, operator, started_at, "
    "issued_at, updated_at, replaces, batch_key, last_error"
)


def _row(row: tuple[object, ...] | None) -> CardRecord | None:
    if row is None:
        return None
    values = list(row)
    values[4] = json.loads(str(values[4]))
    return CardRecord(*values)  # type: ignore[arg-type]


def card(conn: sqlite3.Connection, serial: str) -> CardRecord | None:
    """The row of card ``serial`` (hex), if any."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE serial = ?", (serial,)
        ).fetchone()
    )


def active_card(conn: sqlite3.Connection, ssn: str) -> CardRecord | None:
    """The holder's issued (active) card, if any."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE ssn = ? AND status = 'issued'",
            (ssn,),
        ).fetchone()
    )


def by_batch_key(conn: sqlite3.Connection, batch_key: str) -> CardRecord | None:
    """The card issued (or being issued) for one batch row."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE batch_key = ? "
            "ORDER BY (status = 'issued') DESC LIMIT 1",
            (batch_key,),
        ).fetchone()
    )


def begin(
    conn: sqlite3.Connection,
    *,
    serial: str,
    card_number: str,
    ssn: str,
    profile: str,
    key_versions: Mapping[str, int],
    operator: str | None,
    replaces: str | None,
    batch_key: str | None,
) -> None:
    """Record that personalization of ``serial`` starts (``in_progress``), committing at once."""
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO issuance_cards (serial, card_number, ssn, profile, key_versions, status,"
            " operator, started_at, updated_at, replaces, batch_key)"
            " VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?, ?, ?, ?)"
            " ON CONFLICT(serial) DO UPDATE SET card_number = excluded.card_number,"
            " ssn = excluded.ssn, profile = excluded.profile,"
            " key_versions = excluded.key_versions, operator = excluded.operator,"
            " updated_at = excluded.updated_at, replaces = excluded.replaces,"
            " batch_key = excluded.batch_key, last_error = NULL"
            " WHERE issuance_cards.status = 'in_progress'",
            (
                serial,
                card_number,
                ssn,
                profile,
                json.dumps(dict(key_versions), sort_keys=True),
                operator,
                t,
                t,
                replaces,
                batch_key,
            ),
        )
        conn.execute(
            "INSERT INTO issuance_attempts (serial, operator, started_at) VALUES (?, ?, ?)",
            (serial, operator, t),
        )


def failed(conn: sqlite3.Connection, serial: str, error: str) -> None:
    """Note a failed attempt (the card stays ``in_progress``); commits at once."""
    t = now()
    with transaction(conn):
        conn.execute(
            "UPDATE issuance_cards SET last_error = ?, updated_at = ? "
            "WHERE serial = ? AND status = 'in_progress'",
            (error, t, serial),
        )
        conn.execute(
            "UPDATE issuance_attempts SET finished_at = ?, outcome = 'failed', error = ? "
            "WHERE id = (SELECT MAX(id) FROM issuance_attempts WHERE serial = ?)",
            (t, error, serial),
        )


def mark_issued(conn: sqlite3.Connection, serial: str) -> None:
    """Inside the caller's transaction: the card passed verification and is issued."""
    t = now()
    conn.execute(
        "UPDATE issuance_cards SET status = 'issued', issued_at = ?, updated_at = ?, "
        "last_error = NULL WHERE serial = ?",
        (t, t, serial),
    )
    conn.execute(
        "UPDATE issuance_attempts SET finished_at = ?, outcome = 'issued' "
        "WHERE id = (SELECT MAX(id) FROM issuance_attempts WHERE serial = ?)",
        (t, serial),
    )


def mark_replaced(conn: sqlite3.Connection, serial: str) -> None:
    """Inside the caller's transaction: the old card of a holder is replaced."""
    conn.execute(
        "UPDATE issuance_cards SET status = 'replaced', updated_at = ? WHERE serial = ?",
        (now(), serial),
    )


def cards(conn: sqlite3.Connection, *, status: str | None = None) -> list[CardRecord]:
    """All rows (optionally of one status), oldest first."""
    where, args = ("WHERE status = ?", (status,)) if status else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM issuance_cards {where} ORDER BY started_at, serial", args
    ).fetchall()
    return [r for r in (_row(x) for x in rows) if r is not None]
