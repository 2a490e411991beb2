"""Stores for tests on either engine: an initialized store at a target (issue 20).

A SQLite store creates its tables when it is opened; a PostgreSQL store must be
initialized first, as an administrator does (``sscard store init``):
:func:`init_store` does that for both, so a test can treat them alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sscard import db, schemas


def init_store(target: str) -> str:
    """Create every table of the store at ``target`` (idempotent); the target."""
    schemas.load_all()
    with db.connect(target) as conn:
        db.migrate(conn)
    return target


@contextmanager
def opened(target: str) -> Iterator[db.Connection]:
    """An initialized store at ``target``, open for the block, closed after it."""
    init_store(target)
    conn = db.open_store(target)
    try:
        yield conn
    finally:
        conn.close()
