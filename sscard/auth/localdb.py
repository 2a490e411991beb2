"""The local SQLite store that operators and the audit trail live in (docs/operators.md).

Operators, sessions and the audit trail live in the same file as the issuance
store and the exchange outbox, ``sscard.db`` in the data directory (or
``$SSCARD_STORE``; :func:`sscard.paths.default_store`), so that issuing a
card, its audit record and its outbox event commit in one transaction
(regulation art. 11 and 14). Connections come from :func:`sscard.db.open_db`:
autocommit, WAL, ``synchronous=FULL``, foreign keys, busy timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sscard.db import open_db
from sscard.paths import default_store


def store_path() -> Path:
    """The local store: ``$SSCARD_STORE``, else ``data_dir() / "sscard.db"``."""
    return default_store()


def connect(path: Path | str | None = None) -> sqlite3.Connection:
    """Open (and create) the local store (:func:`sscard.db.open_db`)."""
    return open_db(path)


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
