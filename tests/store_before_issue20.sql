-- The store as sscard made it before versioned schemas (issue 20): the DDL of
-- commit 81f7387, every module's tables, and no sscard_schema table. tests/test_store_cli.py
-- swaps in issuance_cards of before issue 12 (no 'abandoned' status) for one case.
CREATE TABLE audit_log (
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
);
CREATE INDEX audit_log_card ON audit_log (card_number);
CREATE INDEX audit_log_operator ON audit_log (operator);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE audit_checkpoints (
    id      INTEGER PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL,
    time    TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    mac     TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update
    BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete
    BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TABLE operators (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('issuer', 'service', 'kiosk', 'auditor')),
    credential  TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    changed     TEXT NOT NULL
);
CREATE TABLE operator_sessions (
    token_hash  TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    created     TEXT NOT NULL,
    expires     TEXT NOT NULL
);
CREATE TABLE outbox_events (
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
CREATE INDEX outbox_events_undelivered
    ON outbox_events (state, seq) WHERE state != 'delivered';
CREATE TABLE outbox_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE inbox_block_list (
    card_number TEXT PRIMARY KEY,
    card_serial TEXT,
    blocked     INTEGER NOT NULL,
    reason      TEXT,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE inbox_holder_updates (
    event_id    TEXT PRIMARY KEY,
    card_number TEXT NOT NULL,
    ssn         TEXT NOT NULL,
    changes     TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    applied_at  TEXT,
    outcome     TEXT
);
CREATE INDEX inbox_holder_updates_card
    ON inbox_holder_updates (card_number) WHERE applied_at IS NULL;
CREATE TABLE inbox_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE issuance_cards (
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
CREATE INDEX issuance_cards_ssn ON issuance_cards (ssn, status);
CREATE INDEX issuance_cards_batch ON issuance_cards (batch_key);
CREATE TABLE issuance_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL,
    operator    TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT,
    error       TEXT
);
