"""The local SQLite store that operators and the audit trail live in (docs/operators.md).

Operators, sessions and the audit trail live in the same file as the issuance
store and the exchange outbox, ``sscard.db`` in the data directory (or
``$SSCARD_STORE``), so that issuing a card, its audit record and its outbox
event commit in one transaction (regulation art. 11 and 14).

INTERIM: ``sscard.paths`` / ``sscard.db`` (exchange branch) provide the same
(``default_store()``, ``open_db()``); once they are on ``main`` this module
should delegate to them. The semantics are kept identical: autocommit
connections (``isolation_level=None``), WAL, ``synchronous=FULL``, foreign keys,
a 10 s busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sscard.applets.image import data_dir
from sscard.errors import InvalidInput

ENV_STORE = "SSCARD_STORE"
STORE_NAME = "sscard.db"
BUSY_TIMEOUT_MS = 10_000


def store_path() -> Path:
    """The local store: ``$SSCARD_STORE``, else ``data_dir() / "sscard.db"``."""
    explicit = os.environ.get(ENV_STORE)
    return Path(explicit) if explicit else data_dir() / STORE_NAME


def connect(path: Path | str | None = None) -> sqlite3.Connection:
    """Open (and create) the local store in autocommit mode with WAL and foreign keys."""
    target = Path(path) if path is not None else store_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(
            target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.DatabaseError, OSError) as exc:
        reason = "not an SQLite database" if "not a database" in str(exc) else str(exc)
        raise InvalidInput("cannot open the local store", [(str(target), reason)]) from None
    return conn


def ensure_schema(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    """Run ``CREATE … IF NOT EXISTS`` statements one by one.

    Never ``executescript``: it would commit a caller's open transaction.
    """
    for statement in statements:
        conn.execute(statement)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` unless ``conn`` is already in a transaction.

    Inside a caller's transaction nothing is committed here: the caller's
    ``COMMIT`` (or ``ROLLBACK``) covers what was written.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
