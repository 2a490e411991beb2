"""Opening the local SQLite store (WAL, foreign keys, busy timeout) and transactions.

Connections from :func:`open_db` are in autocommit mode (``isolation_level=None``):
nothing is in a transaction unless :func:`transaction` (or an explicit ``BEGIN``)
opened one, so a caller always knows what commits together. ``synchronous=FULL``
makes a commit durable before it returns: an event in the outbox survives a crash
or a power loss (regulation art. 11, docs/exchange.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sscard.errors import InvalidInput
from sscard.paths import default_store

BUSY_TIMEOUT_MS = 10_000


def open_db(path: Path | str | None = None) -> sqlite3.Connection:
    """Open (and create) the store at ``path`` (default :func:`sscard.paths.default_store`).

    The parent directory is created (mode 0700). Raises :class:`InvalidInput`
    when the file cannot be opened or is not an SQLite database.
    """
    target = Path(path) if path is not None else default_store()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(
            target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.DatabaseError, OSError) as exc:
        raise InvalidInput("cannot open the local store", [(str(target), _reason(exc))]) from None
    if str(mode).lower() != "wal":
        conn.close()
        raise InvalidInput(
            "cannot open the local store", [(str(target), f"journal mode {mode}, WAL needed")]
        )
    return conn


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "not a database" in text:
        return "not an sscard store (not an SQLite database)"
    return text or type(exc).__name__


@contextmanager
def transaction(
    conn: sqlite3.Connection, *, immediate: bool = True
) -> Iterator[sqlite3.Connection]:
    """``BEGIN [IMMEDIATE]`` … ``COMMIT``, or ``ROLLBACK`` when the block raises.

    ``IMMEDIATE`` takes the write lock up front, so two writers wait for each
    other (busy timeout) instead of failing at their first write.
    """
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
