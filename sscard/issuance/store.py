"""The local issuance store: which card was issued to whom, and how it went (issue 6).

Tables live in the one local SQLite file (``sscard.db``, docs/exchange.md)
beside the outbox and the audit trail, so that marking a card issued, its audit
record and its ``card.issued`` event commit in one transaction. Never a PIN or
a key: card serial, card number, holder SSN, profile, key versions, operator,
times and outcome.

Statuses of a card (``issuance_cards.status``):

* ``in_progress``: personalization started and did not finish; the card still
  exists (a physical card, or a card image file) and running the same issuance
  again finishes it;
* ``issued``: verified and recorded;
* ``replaced``: an issued card replaced by a newer one for the same holder;
* ``abandoned``: the card can never come back, so its issuance can never be
  finished: an in-memory emulated card (``issue batch --virtual``) whose process
  ended before the card was issued. ``closed_reason`` says why.

Outcomes of an attempt (``issuance_attempts.outcome``): ``issued``, ``failed``
(an error, class name in ``error``), ``superseded`` (the process ended without
an outcome and a later attempt issued the card, or another card, to the same
holder) and ``abandoned`` (the attempt's in-memory card is gone). ``NULL``
only while an attempt runs.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sscard.db import SQLITE, Connection, Migration, register_schema, transaction
from sscard.db import ensure_schema as db_ensure_schema
from sscard.errors import InvalidInput
from sscard.i18n import N_, _

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuance_cards (
    serial       TEXT PRIMARY KEY,
    card_number  TEXT NOT NULL,
    ssn          TEXT NOT NULL,
    profile      TEXT NOT NULL,
    key_versions TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('in_progress', 'issued', 'replaced', 'abandoned')),
    operator     TEXT,
    started_at   TEXT NOT NULL,
    issued_at    TEXT,
    updated_at   TEXT NOT NULL,
    replaces     TEXT,
    batch_key    TEXT,
    last_error   TEXT,
    held_by      TEXT,
    closed_reason TEXT
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

STATUSES = ("in_progress", "issued", "replaced", "abandoned")

# Columns of an issuance_cards table created before "abandoned" existed (issue 12).
_OLD_COLUMNS = (
    "serial, card_number, ssn, profile, key_versions, status, operator, started_at, "
    "issued_at, updated_at, replaces, batch_key, last_error"
)


def now() -> str:
    """UTC time as ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _upgrade_legacy(conn: Connection) -> None:
    """Version 1 on an SQLite store of before versioned schemas: rebuild an
    ``issuance_cards`` table without the ``abandoned`` status (issue 12), rows kept.

    SQLite cannot change a CHECK constraint in place; the rebuild runs in the
    migration's transaction, so a crash leaves the old table whole.
    """
    if conn.engine != SQLITE:
        return
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'issuance_cards'"
    ).fetchone()
    if row is None or "'abandoned'" in str(row[0]):
        return
    conn.execute("ALTER TABLE issuance_cards RENAME TO issuance_cards_v1")
    conn.execute("DROP INDEX IF EXISTS issuance_cards_ssn")
    conn.execute("DROP INDEX IF EXISTS issuance_cards_batch")
    for statement in _TABLES:
        conn.execute(statement)
    conn.execute(
        f"INSERT INTO issuance_cards ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM issuance_cards_v1"
    )
    conn.execute("DROP TABLE issuance_cards_v1")


def _one_active_card(conn: Connection) -> None:
    """Version 2: at most one issued (active) card per holder, as a unique index the
    database enforces for every station (a partial index: only ``issued`` rows)."""
    twice = conn.execute(
        "SELECT ssn, COUNT(*) FROM issuance_cards WHERE status = 'issued' "
        "GROUP BY ssn HAVING COUNT(*) > 1 ORDER BY ssn LIMIT 5"
    ).fetchall()
    if twice:
        raise InvalidInput(
            _("cannot add the rule 'one active card per holder': some holders have several"),
            [(f"ssn {ssn}", _("{count} cards issued").format(count=count)) for ssn, count in twice],
        ).with_hint(_("mark the surplus cards replaced, then upgrade again"))
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS issuance_one_active_card "
        "ON issuance_cards (ssn) WHERE status = 'issued'"
    )


_TABLES = tuple(s for s in _SCHEMA.split(";") if s.strip())
SCHEMA = register_schema(
    "issuance",
    [
        Migration(1, both=_TABLES, run=_upgrade_legacy, note=N_("issued cards and attempts")),
        Migration(2, run=_one_active_card, note=N_("one active card per holder (unique index)")),
    ],
)
ONE_ACTIVE_CARD = "issuance_one_active_card"
"""The index that holds one issued card per holder (its name appears in the engine's error)."""


def is_one_active_card_violation(exc: BaseException) -> bool:
    """Whether ``exc`` (a :class:`sscard.db.IntegrityError`) is the one-active-card rule
    biting: PostgreSQL names the index, SQLite the indexed column."""
    text = str(exc)
    return ONE_ACTIVE_CARD in text or "issuance_cards.ssn" in text


def ensure_schema(conn: Connection) -> None:
    """Create the issuance tables when missing; upgrade them from an older version."""
    db_ensure_schema(conn, SCHEMA.name)


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
    held_by: str | None = None
    closed_reason: str | None = None

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


_COLUMNS = f"{_OLD_COLUMNS}, held_by, closed_reason"


def _row(row: tuple[object, ...] | None) -> CardRecord | None:
    if row is None:
        return None
    values = list(row)
    values[4] = json.loads(str(values[4]))
    return CardRecord(*values)  # type: ignore[arg-type]


def card(conn: Connection, serial: str) -> CardRecord | None:
    """The row of card ``serial`` (hex), if any."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE serial = ?", (serial,)
        ).fetchone()
    )


def active_card(conn: Connection, ssn: str) -> CardRecord | None:
    """The holder's issued (active) card, if any."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE ssn = ? AND status = 'issued'",
            (ssn,),
        ).fetchone()
    )


def by_batch_key(conn: Connection, batch_key: str) -> CardRecord | None:
    """The card issued (or being issued) for one batch row."""
    return _row(
        conn.execute(
            f"SELECT {_COLUMNS} FROM issuance_cards WHERE batch_key = ? "
            "ORDER BY (status = 'issued') DESC LIMIT 1",
            (batch_key,),
        ).fetchone()
    )


def begin(
    conn: Connection,
    *,
    serial: str,
    card_number: str,
    ssn: str,
    profile: str,
    key_versions: Mapping[str, int],
    operator: str | None,
    replaces: str | None,
    batch_key: str | None,
    held_by: str | None = None,
) -> None:
    """Record that personalization of ``serial`` starts (``in_progress``), committing at once.

    ``held_by`` is :func:`process_id` when the card lives only in this
    process's memory (it is gone once the process ends), else ``None``.
    """
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO issuance_cards (serial, card_number, ssn, profile, key_versions, status,"
            " operator, started_at, updated_at, replaces, batch_key, held_by)"
            " VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(serial) DO UPDATE SET card_number = excluded.card_number,"
            " ssn = excluded.ssn, profile = excluded.profile,"
            " key_versions = excluded.key_versions, operator = excluded.operator,"
            " updated_at = excluded.updated_at, replaces = excluded.replaces,"
            " batch_key = excluded.batch_key, last_error = NULL, status = 'in_progress',"
            " held_by = excluded.held_by, closed_reason = NULL"
            " WHERE issuance_cards.status IN ('in_progress', 'abandoned')",
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
                held_by,
            ),
        )
        conn.execute(
            "INSERT INTO issuance_attempts (serial, operator, started_at) VALUES (?, ?, ?)",
            (serial, operator, t),
        )


def failed(conn: Connection, serial: str, error: str) -> None:
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


def forget_untouched(conn: Connection, serial: str, error: str) -> None:
    """The attempt failed before anything was written to the card: close the attempt as
    ``failed`` and drop the card's ``in_progress`` row (the card is as blank as before)."""
    failed(conn, serial, error)
    with transaction(conn):
        conn.execute(
            "DELETE FROM issuance_cards WHERE serial = ? AND status = 'in_progress'", (serial,)
        )


def mark_issued(conn: Connection, serial: str) -> None:
    """Inside the caller's transaction: the card passed verification and is issued.

    Its latest attempt is closed as ``issued``. Earlier attempts for this card,
    or for another card of the same holder, that never got an outcome (their
    process was killed) are closed as ``superseded``; the rows of those other
    cards stay as they are (a physical card may come back and be resumed).
    """
    t = now()
    conn.execute(
        "UPDATE issuance_cards SET status = 'issued', issued_at = ?, updated_at = ?, "
        "last_error = NULL, closed_reason = NULL WHERE serial = ?",
        (t, t, serial),
    )
    closed = conn.execute(  # one round trip: find the latest attempt and close it
        "UPDATE issuance_attempts SET finished_at = ?, outcome = 'issued' WHERE id ="
        " (SELECT MAX(id) FROM issuance_attempts WHERE serial = ?) RETURNING id",
        (t, serial),
    ).fetchone()
    if closed is None:
        return
    (latest,) = closed
    conn.execute(
        "UPDATE issuance_attempts SET finished_at = ?, outcome = 'superseded', error = ? "
        "WHERE finished_at IS NULL AND id < ? AND serial IN (SELECT serial FROM issuance_cards"
        " WHERE ssn = (SELECT ssn FROM issuance_cards WHERE serial = ?))",
        (
            t,
            f"superseded: ended without an outcome; attempt {latest} issued card {serial} "
            "to this holder",
            latest,
            serial,
        ),
    )


def process_id() -> str:
    """This process as ``host:pid:start`` (start: the kernel's start tick, where known)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{stat[1] if stat else ''}"


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """State and start time of process ``pid`` from ``/proc`` (None where there is none)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after "pid (comm)": field 3 is fields[0]
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def process_gone(owner: str) -> bool:
    """Whether the process named ``owner`` (:func:`process_id`) has certainly ended.

    False whenever that cannot be told for sure: another host, a process that
    still runs, or a malformed value. A zombie, or a pid now used by a process
    started at another time, counts as ended.
    """
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, run by another user
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, start = stat
    return state in ("Z", "X") or (bool(parts[2]) and start != parts[2])


def gone_cards(conn: Connection) -> list[CardRecord]:
    """``in_progress`` rows of in-memory cards whose process has ended: they can never return."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM issuance_cards WHERE status = 'in_progress' "
        "AND held_by IS NOT NULL ORDER BY started_at, serial"
    ).fetchall()
    found = [r for r in (_row(x) for x in rows) if r is not None]
    return [r for r in found if r.held_by is not None and process_gone(r.held_by)]


def mark_abandoned(conn: Connection, serial: str, reason: str) -> None:
    """Inside the caller's transaction: close an ``in_progress`` card that is gone, and its
    attempts that never got an outcome, with ``reason``."""
    t = now()
    conn.execute(
        "UPDATE issuance_cards SET status = 'abandoned', closed_reason = ?, updated_at = ? "
        "WHERE serial = ? AND status = 'in_progress'",
        (reason, t, serial),
    )
    conn.execute(
        "UPDATE issuance_attempts SET finished_at = ?, outcome = 'abandoned', error = ? "
        "WHERE serial = ? AND finished_at IS NULL",
        (t, reason, serial),
    )


def mark_replaced(conn: Connection, serial: str) -> None:
    """Inside the caller's transaction: the old card of a holder is replaced."""
    conn.execute(
        "UPDATE issuance_cards SET status = 'replaced', updated_at = ? WHERE serial = ?",
        (now(), serial),
    )


def cards(conn: Connection, *, status: str | None = None) -> list[CardRecord]:
    """All rows (optionally of one status), oldest first."""
    where, args = ("WHERE status = ?", (status,)) if status else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM issuance_cards {where} ORDER BY started_at, serial", args
    ).fetchall()
    return [r for r in (_row(x) for x in rows) if r is not None]
