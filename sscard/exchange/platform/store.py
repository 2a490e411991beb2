"""The reference platform's store: received events and the per-department audit (art. 11, 13).

One SQLite file (WAL, ``synchronous=FULL``): a batch is stored in one
transaction, so a crash stores all of it or none, and an acknowledged event is
on disk. Event ids are unique: a repeated id is acknowledged as ``duplicate``
and not stored again. ``seq`` orders events for the pull cursor.

``platform_audit_heads`` keeps, per service point, the newest head of its audit
trail it sent (:meth:`PlatformStore.witness`), signed or not (``key_id`` and
``mac`` null): it only ever moves forward along the same chain, so a service
point whose trail was cut is caught against it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard import db
from sscard.exchange.events import utc_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS platform_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    department    TEXT NOT NULL,
    service_point TEXT NOT NULL,
    category      TEXT NOT NULL,
    occurred_at   TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    payload       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_events_category ON platform_events (category, seq);
CREATE TABLE IF NOT EXISTS platform_audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    department TEXT,
    client     TEXT,
    action     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_audit_department ON platform_audit (department, seq);
CREATE TABLE IF NOT EXISTS platform_audit_heads (
    service_point TEXT PRIMARY KEY,
    department    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    time          TEXT NOT NULL,
    key_id        TEXT,
    mac           TEXT,
    received_at   TEXT NOT NULL
);
"""


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Payload text as stored (one encoder for every event: cheaper than ``json.dumps``)."""


class WitnessConflict(Exception):
    """A checkpoint that goes backwards or forks from the witnessed head (HTTP 409)."""


@dataclass(frozen=True)
class Ack:
    """The platform's answer for one pushed event."""

    id: str
    status: str  # "stored" | "duplicate"
    seq: int


class PlatformStore:
    """Thread-safe access to the platform's SQLite file (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn = db.open_db(self.path)
        self._lock = threading.Lock()
        with self._lock:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def store_batch(self, department: str, events: Iterable[dict[str, Any]]) -> list[Ack]:
        """Store schema-valid events in one transaction; a known id is a ``duplicate``.

        One ``executemany`` inserts the batch (a known id is skipped); the rows
        with a ``seq`` above the highest one before the batch are the ones it
        stored (``AUTOINCREMENT`` never reuses a seq, and the write lock is held).
        An id sent twice in one batch is stored once: its second entry is a
        duplicate.
        """
        batch = list(events)
        now = utc_text()
        rows = [
            (
                e["id"],
                department,
                e["service_point"],
                e["category"],
                e["occurred_at"],
                now,
                _COMPACT(e["payload"]),
            )
            for e in batch
        ]
        with self._lock, db.transaction(self._conn):
            top = self._conn.execute("SELECT coalesce(max(seq), 0) FROM platform_events")
            before = int(top.fetchone()[0])
            self._conn.executemany(
                "INSERT INTO platform_events (id, department, service_point, category,"
                " occurred_at, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                rows,
            )
            seqs = dict(
                self._conn.execute(
                    "SELECT id, seq FROM platform_events WHERE seq > ?", (before,)
                ).fetchall()
            )
            new = set(seqs)
            for e in batch:
                if e["id"] not in seqs:
                    row = self._conn.execute(
                        "SELECT seq FROM platform_events WHERE id = ?", (e["id"],)
                    ).fetchone()
                    seqs[e["id"]] = int(row[0])
        acks: list[Ack] = []
        for e in batch:
            event_id = e["id"]
            if event_id in new:
                new.discard(event_id)  # a second entry of this id in the batch: a duplicate
                acks.append(Ack(event_id, "stored", seqs[event_id]))
            else:
                acks.append(Ack(event_id, "duplicate", seqs[event_id]))
        return acks

    def feed(
        self, after: int, limit: int, categories: Iterable[str], exclude_service_point: str
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Events after ``after`` in ``categories`` from other service points, oldest first.

        Returns ``(items, cursor, more)``; ``cursor`` is the seq of the last item
        (``after`` when none), to be passed as ``after`` next time.
        """
        cats = sorted(categories)
        if not cats:
            return [], after, False
        marks = ",".join("?" * len(cats))
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, department, id, service_point, occurred_at, category, payload"
                f" FROM platform_events WHERE seq > ? AND category IN ({marks})"
                " AND service_point != ? ORDER BY seq LIMIT ?",
                (after, *cats, exclude_service_point, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        items = [
            {
                "seq": r[0],
                "department": r[1],
                "event": {
                    "id": r[2],
                    "service_point": r[3],
                    "occurred_at": r[4],
                    "category": r[5],
                    "payload": json.loads(r[6]),
                },
            }
            for r in rows[:limit]
        ]
        return items, (items[-1]["seq"] if items else after), more

    def audit(
        self,
        department: str | None,
        client: str | None,
        action: str,
        status: int,
        detail: dict[str, Any],
    ) -> None:
        """Record one request in the audit trail (ids and counts, never a payload)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO platform_audit (at, department, client, action, status, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (utc_text(), department, client, action, status, json.dumps(detail)),
            )

    def audit_log(self, department: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit entries (of one department), oldest first."""
        where, args = ("WHERE department = ?", [department]) if department else ("", [])
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, at, department, client, action, status, detail FROM platform_audit"
                f" {where} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        keys = ("seq", "at", "department", "client", "action", "status")
        return [dict(zip(keys, r[:6], strict=True)) | {"detail": json.loads(r[6])} for r in rows][
            ::-1
        ]

    def audit_head(self, service_point: str) -> tuple[dict[str, Any], str] | None:
        """The witnessed checkpoint of ``service_point`` and when it came, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, hash, time, key_id, mac, received_at FROM platform_audit_heads"
                " WHERE service_point = ?",
                (service_point,),
            ).fetchone()
        if row is None:
            return None
        keys = ("seq", "hash", "time", "key_id", "mac")
        return dict(zip(keys, row[:5], strict=True)), str(row[5])

    def witness(
        self,
        department: str,
        service_point: str,
        checkpoint: dict[str, Any],
        extends: dict[str, Any] | None,
    ) -> str:
        """Keep ``checkpoint`` as the witnessed head of ``service_point``.

        Returns ``witnessed`` (a newer head) or ``unchanged`` (the same head
        again). Raises :class:`WitnessConflict` for a checkpoint before the
        witnessed record, one with another hash at the same record (a fork), or
        a newer one whose sender's record at the witnessed seq (``extends``)
        is not the witnessed one (its trail was rewritten or cut).
        """
        seq, head = int(checkpoint["seq"]), str(checkpoint["hash"])
        with self._lock, db.transaction(self._conn):
            row = self._conn.execute(
                "SELECT seq, hash FROM platform_audit_heads WHERE service_point = ?",
                (service_point,),
            ).fetchone()
            if row is not None:
                known_seq, known_hash = int(row[0]), str(row[1])
                if seq < known_seq:
                    raise WitnessConflict(
                        f"the checkpoint goes backwards: the platform witnessed record "
                        f"{known_seq}, this checkpoint covers record {seq} only"
                    )
                if seq == known_seq:
                    if head != known_hash:
                        raise WitnessConflict(
                            f"the checkpoint forks: record {seq} has another hash than the "
                            "one the platform witnessed"
                        )
                    return "unchanged"
                if extends is None or (int(extends["seq"]), str(extends["hash"])) != (
                    known_seq,
                    known_hash,
                ):
                    raise WitnessConflict(
                        f"the checkpoint forks: it does not extend record {known_seq} as the "
                        "platform witnessed it"
                    )
            self._conn.execute(
                "INSERT INTO platform_audit_heads (service_point, department, seq, hash, time,"
                " key_id, mac, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (service_point) DO UPDATE SET department = excluded.department,"
                " seq = excluded.seq, hash = excluded.hash, time = excluded.time,"
                " key_id = excluded.key_id, mac = excluded.mac,"
                " received_at = excluded.received_at",
                (
                    service_point,
                    department,
                    seq,
                    head,
                    checkpoint["time"],
                    checkpoint["key_id"],
                    checkpoint["mac"],
                    utc_text(),
                ),
            )
        return "witnessed"

    def count(self) -> int:
        """Number of stored events."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM platform_events").fetchone()[0])

    def event_ids(self) -> list[str]:
        """Every stored event id, in arrival order."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT id FROM platform_events ORDER BY seq")]
