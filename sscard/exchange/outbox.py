"""The durable outbox: card events waiting for the exchange platform (regulation art. 11).

The outbox lives in the caller's store (:func:`sscard.db.open_store`),
in tables prefixed ``outbox_``. :func:`enqueue` inserts and never commits: the
event commits or rolls back with the local change that caused it, so a crash
cannot lose an event nor report a change that did not happen::

    with db.transaction(conn):
        ...                                   # the issuance store's own writes
        outbox.enqueue(conn, "card.issued", payload, service_point="sp-01")

The reader side (:func:`pending`, :func:`mark_delivered`, :func:`mark_rejected`,
:func:`stats`) is what ``sscard sync`` uses (docs/exchange.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sscard import db
from sscard.db import Connection
from sscard.errors import InvalidInput
from sscard.exchange.events import Event, new_event_id, parse_utc, utc_text
from sscard.exchange.schema import CATEGORIES, payload_problems
from sscard.i18n import N_, _

MAX_AGE = timedelta(hours=24)
"""Art. 11: a change reaches the shared database within 24 hours; older is a violation."""

SERVICE_POINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    category      TEXT NOT NULL,
    service_point TEXT NOT NULL,
    occurred_at   TEXT NOT NULL,
    enqueued_at   TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'rejected')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    delivered_at  TEXT,
    platform_seq  INTEGER,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS outbox_events_undelivered
    ON outbox_events (state, seq) WHERE state != 'delivered';
CREATE TABLE IF NOT EXISTS outbox_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


SCHEMA = db.register_schema(
    "outbox",
    [
        db.Migration(
            1, both=tuple(_SCHEMA.split(";")), note=N_("events waiting for the exchange platform")
        )
    ],
)


def ensure_schema(conn: Connection) -> None:
    """Create the outbox tables when missing (idempotent; commits nothing else)."""
    db.ensure_schema(conn, SCHEMA.name)


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Payload text as stored (one encoder for every event: cheaper than ``json.dumps``)."""

_INSERT = (
    "INSERT INTO outbox_events (id, category, service_point, occurred_at, enqueued_at, payload)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _problems(
    category: str,
    payload: Mapping[str, Any],
    service_point: str,
    occurred_at: datetime | None,
    where: str = "",
) -> list[tuple[str, str]]:
    """Why the event cannot be queued (JSON paths prefixed with ``where``); empty when it can."""
    problems: list[tuple[str, str]] = []
    if category not in CATEGORIES:
        problems.append(
            (
                f"{where}category",
                _("unknown; known: {categories}").format(categories=", ".join(CATEGORIES)),
            )
        )
    else:
        problems += [
            (f"{where}payload{path}", text)
            for path, text in payload_problems(category, dict(payload))
        ]
    if not SERVICE_POINT.match(service_point):
        problems.append((f"{where}service_point", _("1-64 letters, digits, '.', '_' or '-'")))
    if occurred_at is not None and occurred_at.tzinfo is None:
        problems.append(
            (f"{where}occurred_at", _("must be time-zone aware (e.g. datetime.now(UTC))"))
        )
    return problems


def enqueue(
    conn: Connection,
    category: str,
    payload: Mapping[str, Any],
    *,
    service_point: str,
    occurred_at: datetime | None = None,
) -> str:
    """Validate and insert one event, without committing; returns its id (a UUIDv7).

    Raises :class:`InvalidInput` naming each failing JSON path (nothing inserted)
    for an unknown category, a payload that fails the category's schema (which
    admits no PIN and no key), a bad service point id or a naive ``occurred_at``.
    """
    problems = _problems(category, payload, service_point, occurred_at)
    if problems:
        raise InvalidInput(_("invalid {category} event").format(category=category), problems)
    event_id = new_event_id()
    now = utc_text()
    conn.execute(
        _INSERT,
        (
            event_id,
            category,
            service_point,
            utc_text(occurred_at) if occurred_at else now,
            now,
            _COMPACT(dict(payload)),
        ),
    )
    return event_id


def enqueue_many(
    conn: Connection,
    events: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    service_point: str,
    occurred_at: datetime | None = None,
) -> list[str]:
    """Validate and insert many ``(category, payload)`` events, all or none; their ids.

    For a backlog (a migration, a batch of cards issued offline): every event
    is checked first, as by :func:`enqueue`, and :class:`InvalidInput` names each
    failing path as ``events/INDEX/...`` with nothing inserted. Then one
    statement inserts them all in :func:`sscard.db.transaction`: inside the
    caller's transaction a savepoint (they commit or roll back with it),
    otherwise a transaction of their own.
    """
    batch = [(category, dict(payload)) for category, payload in events]
    problems: list[tuple[str, str]] = []
    for i, (category, payload) in enumerate(batch):
        problems += _problems(category, payload, service_point, occurred_at, f"events/{i}/")
    if problems:
        raise InvalidInput(
            _("invalid events: {count} problem(s); none was queued").format(count=len(problems)),
            problems,
        )
    now = utc_text()
    when = utc_text(occurred_at) if occurred_at else now
    rows = [
        (new_event_id(), category, service_point, when, now, _COMPACT(payload))
        for category, payload in batch
    ]
    with db.transaction(conn):
        conn.executemany(_INSERT, rows)
    return [r[0] for r in rows]


def pending(conn: Connection, limit: int = 500) -> list[Event]:
    """Up to ``limit`` undelivered events, oldest first (rejected ones are left out).

    ``state != 'delivered'`` is redundant but lets SQLite use the partial index
    of undelivered events instead of scanning every delivered one.
    """
    rows = conn.execute(
        "SELECT id, service_point, occurred_at, category, payload FROM outbox_events"
        " WHERE state = 'pending' AND state != 'delivered' ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]


def mark_delivered(conn: Connection, acks: Mapping[str, int]) -> int:
    """Mark events delivered: ``acks`` maps event id to the platform's sequence number.

    Returns how many rows changed; does not commit.
    """
    now = utc_text()
    return conn.executemany(
        "UPDATE outbox_events SET state = 'delivered', delivered_at = ?, platform_seq = ?,"
        " attempts = attempts + 1, last_error = NULL WHERE id = ? AND state != 'delivered'",
        [(now, seq, event_id) for event_id, seq in acks.items()],
    )


def mark_rejected(conn: Connection, event_id: str, reason: str) -> None:
    """Set an event aside: the platform refused it (``reason``: no value, only the rule).

    A rejected event stays undelivered and counts in :func:`stats` (it becomes a
    violation after 24 h); :func:`retry_rejected` puts it back in the queue.
    """
    conn.execute(
        "UPDATE outbox_events SET state = 'rejected', attempts = attempts + 1, last_error = ?"
        " WHERE id = ? AND state = 'pending'",
        (reason[:1000], event_id),
    )


def record_failure(conn: Connection, event_ids: Iterable[str], reason: str) -> None:
    """Count a failed delivery attempt (platform down) for each event."""
    conn.executemany(
        "UPDATE outbox_events SET attempts = attempts + 1, last_error = ? WHERE id = ?",
        [(reason[:1000], i) for i in event_ids],
    )


def retry_rejected(conn: Connection) -> int:
    """Put every rejected event back in the queue; returns how many."""
    return conn.execute(
        "UPDATE outbox_events SET state = 'pending' WHERE state = 'rejected'"
    ).rowcount


def set_state(conn: Connection, key: str, value: str) -> None:
    """Remember one fact about the sync (e.g. ``last_push_at``)."""
    conn.execute(
        "INSERT INTO outbox_state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def get_state(conn: Connection, key: str) -> str | None:
    """A fact stored by :func:`set_state`, or None."""
    row = conn.execute("SELECT value FROM outbox_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class Late:
    """An undelivered event older than the 24-hour limit."""

    id: str
    category: str
    occurred_at: str
    age_seconds: float
    state: str
    last_error: str | None


@dataclass(frozen=True)
class Stats:
    """The outbox at a glance: what ``sscard sync status`` prints."""

    pending: int
    rejected: int
    delivered: int
    oldest_undelivered_at: str | None
    oldest_age_seconds: float | None
    violations: list[Late] = field(default_factory=list)
    violation_count: int = 0
    last_push_at: str | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stats as the ``--json`` document of ``sync status``."""
        return {
            "pending": self.pending,
            "rejected": self.rejected,
            "delivered": self.delivered,
            "undelivered": self.pending + self.rejected,
            "oldest_undelivered_at": self.oldest_undelivered_at,
            "oldest_age_seconds": self.oldest_age_seconds,
            "max_age_seconds": MAX_AGE.total_seconds(),
            "violation_count": self.violation_count,
            "violations": [v.__dict__ for v in self.violations],
            "last_push_at": self.last_push_at,
            "last_error": self.last_error,
        }


def stats(
    conn: Connection,
    now: datetime | None = None,
    *,
    max_age: timedelta = MAX_AGE,
    list_limit: int = 100,
) -> Stats:
    """Counts, the age of the oldest undelivered event and every event past ``max_age``.

    Age is measured from ``occurred_at`` (the time of the change, art. 11).
    ``violations`` lists at most ``list_limit`` of them; ``violation_count`` counts all.
    """
    now = now or datetime.now(UTC)
    counts = dict(
        conn.execute("SELECT state, count(*) FROM outbox_events GROUP BY state").fetchall()
    )
    oldest = conn.execute(
        "SELECT min(occurred_at) FROM outbox_events WHERE state != 'delivered'"
    ).fetchone()[0]
    limit_text = utc_text(now - max_age)
    late_count = conn.execute(
        "SELECT count(*) FROM outbox_events WHERE state != 'delivered' AND occurred_at < ?",
        (limit_text,),
    ).fetchone()[0]
    late_rows = conn.execute(
        "SELECT id, category, occurred_at, state, last_error FROM outbox_events"
        " WHERE state != 'delivered' AND occurred_at < ? ORDER BY occurred_at LIMIT ?",
        (limit_text, list_limit),
    ).fetchall()
    late = [
        Late(r[0], r[1], r[2], (now - parse_utc(r[2])).total_seconds(), r[3], r[4])
        for r in late_rows
    ]
    return Stats(
        pending=counts.get("pending", 0),
        rejected=counts.get("rejected", 0),
        delivered=counts.get("delivered", 0),
        oldest_undelivered_at=oldest,
        oldest_age_seconds=None if oldest is None else (now - parse_utc(oldest)).total_seconds(),
        violations=late,
        violation_count=late_count,
        last_push_at=get_state(conn, "last_push_at"),
        last_error=get_state(conn, "last_error"),
    )
