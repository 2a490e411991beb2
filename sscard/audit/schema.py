"""The audit tables in the local store (docs/operators.md, "Audit trail")."""

from __future__ import annotations

import sqlite3

from sscard import db

LOG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_log (
    seq         INTEGER PRIMARY KEY,
    time        TEXT NOT NULL,
    operator    TEXT,
    role        TEXT,
    action      TEXT NOT NULL,
    card_serial TEXT,
    card_number TEXT,
    outcome     TEXT NOT NULL,
    error       TEXT,
    detail      TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS audit_log_card ON audit_log (card_number)",
    "CREATE INDEX IF NOT EXISTS audit_log_operator ON audit_log (operator)",
    # Append-only for sscard itself; a deliberate tamperer can drop these, the chain catches it.
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)

CHECKPOINT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id      INTEGER PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL,
    time    TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    mac     TEXT NOT NULL
)""",
    """CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update
    BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete
    BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END""",
)


SCHEMA = db.register_schema("audit", LOG_SCHEMA + CHECKPOINT_SCHEMA)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables if missing (safe inside a caller's transaction)."""
    db.ensure_schema(conn, SCHEMA.name)
